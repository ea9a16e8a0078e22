"""Model loading: packaged EfficientNet-Lite0 for real; tiny random CLIP/BLIP/Whisper through the real code."""

from __future__ import annotations

import numpy as np
import pytest

from crawler.items import VideoItem
from processing.config import ProcessingConfig
from processing.stages.embed import EmbedStage
from processing.stages.frames import FramesStage
from processing.stages.labels import LabelsStage
from processing.vision import models
from processing.work import Work
from tests.processing.vision.tiny_models import make_tiny_blip, make_tiny_clip, make_tiny_whisper


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folders of tiny random models, built once per module (no hub)."""
    root = tmp_path_factory.mktemp("models")
    return {
        "clip": str(make_tiny_clip(root / "clip")),
        "blip": str(make_tiny_blip(root / "blip")),
        "whisper": str(make_tiny_whisper(root / "whisper")),
    }


@pytest.fixture(scope="module")
def world(media):
    """gradio_world (30 s, with audio) sampled by the real FramesStage."""
    stage = FramesStage(frames_per_video=4)
    stage.setup()
    work = Work(VideoItem(url="u", source="t", path=str(media["gradio_world"]), video_id="world"))
    stage.process_batch([work])
    assert work.audio is not None
    return work


def test_efficientnet_fp32_and_bf16_agree(world):
    fp32 = models.load_image_embedder("efficientnet-lite0", "cpu", "fp32")
    low = models.load_image_embedder("efficientnet-lite0", "cpu", "bf16")
    a, b = fp32(world.frames), low(world.frames)
    assert a.embeddings.shape == (4, 1280) and a.logits.shape == (4, 1000)
    cos = (a.embeddings * b.embeddings).sum(axis=1)
    assert cos.min() > 0.97
    assert (a.logits.argmax(1) == b.logits.argmax(1)).mean() >= 0.75


def test_precision_and_device_choice():
    assert models.pick_precision("fp32", "cpu") == "fp32"
    assert models.pick_precision("auto", "cpu") in ("bf16", "fp32")
    assert models.pick_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="precision"):
        models.pick_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="embed model"):
        models.load_image_embedder("vgg16", "cpu")


def test_tiny_clip_as_embedding_model_and_zero_shot_tags(tiny, world):
    work = Work(VideoItem(url="u", source="t", video_id="w"), frames=world.frames.copy())
    embed = EmbedStage(model=f"clip:{tiny['clip']}", precision="fp32", device="cpu")
    embed.process_batch([work])
    assert work.item.status == "new", work.item.errors
    assert work.embeddings.shape == (4, 32)
    assert np.allclose(np.linalg.norm(work.embeddings, axis=1), 1.0, atol=1e-4)
    assert work.item.embedding_model == f"clip:{tiny['clip']}" and work.logits is None
    labels = LabelsStage(
        labelers=["clip_tags", "imagenet"],
        options={"clip_tags": {"model": tiny["clip"], "vocabulary": ["a globe", "a cat", "a car"], "top_k": 2}},
    )
    labels.process_batch([work])
    out = work.item.labels["clip_tags"]
    assert out["model"] == f"clip:{tiny['clip']}" == work.item.models["clip_tags"]
    assert len(out["tags"]) == 2 and {t["name"] for t in out["tags"]} <= {"a globe", "a cat", "a car"}
    # imagenet without EmbedStage logits runs EfficientNet itself
    assert work.item.labels["imagenet"]["tags"] and "error" not in work.item.labels["imagenet"]


def test_tiny_blip_captions_and_tiny_whisper_transcribes(tiny, world):
    stage = LabelsStage(
        labelers=["caption", "transcript"],
        options={"caption": {"model": tiny["blip"], "max_new_tokens": 8},
                 "transcript": {"model": tiny["whisper"], "max_new_tokens": 8}},
    )
    stage.process_batch([world])
    assert world.item.status == "new", world.item.errors
    caption, transcript = world.item.labels["caption"], world.item.labels["transcript"]
    assert caption["model"] == f"blip:{tiny['blip']}" and isinstance(caption["text"], str)
    assert transcript["model"] == f"whisper:{tiny['whisper']}" and isinstance(transcript["text"], str)
    assert "labels.caption" not in world.item.errors and "labels.transcript" not in world.item.errors


def test_from_config_builds_stages_from_the_settings(tmp_path, tiny, monkeypatch):
    import settings

    monkeypatch.setattr(settings, "LABELERS", "imagenet, clip_tags")
    monkeypatch.setattr(settings, "CLIP_MODEL", tiny["clip"])
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=0)
    stage = LabelsStage.from_config(cfg)
    assert [lab.name for lab in stage.labelers] == ["imagenet", "clip_tags"]
    assert stage.labelers[1].model == f"clip:{tiny['clip']}"
    assert EmbedStage.from_config(cfg).model_spec == "efficientnet-lite0"
    monkeypatch.setattr(settings, "CLIP_MODEL", "")
    with pytest.raises(ValueError, match="needs a CLIP model"):
        LabelsStage.from_config(ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=0))
