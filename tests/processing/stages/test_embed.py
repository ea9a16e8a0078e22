"""EmbedStage on real decoded frames: per-frame embeddings, descriptor, logits, the near-dup input."""

from __future__ import annotations

import numpy as np
import pytest

from processing.stages.embed import EmbedStage
from processing.vision.image import trim_borders
from tests.processing.stages.conftest import work_for


def test_embed_stage_descriptor_logits_and_skips(media, frames_stage, embed_stage):
    works = [work_for(media["bikes"]), work_for(media["gradio_a"]), work_for(media["bikes"], "decided")]
    works[2].item.fail("probe", "timeout")
    frames_stage.process_batch(works)
    embed_stage.stats.take()
    embed_stage.process_batch(works)
    n = frames_stage.frames_per_video
    for work in works[:2]:
        assert work.embeddings.shape == (n, 1280)
        assert np.allclose(np.linalg.norm(work.embeddings, axis=1), 1.0, atol=1e-4)
        assert np.linalg.norm(work.descriptor) == pytest.approx(1.0, abs=1e-5)
        assert work.logits.shape == (n, 1000)
        assert work.item.embedding_model == "efficientnet-lite0" == work.item.models["embedding"]
        assert work.dedup_embeddings.shape == (n, 1280) and work.dedup_model == "efficientnet-lite0"
    assert works[2].embeddings is None and works[2].item.errors == {"probe": "timeout"}
    stats = embed_stage.stats.take()
    assert (stats["ok"], stats["videos"]) == (2, 2) and stats["seconds"] > 0
    # the bare model call gives the stage's embeddings for the same frames
    bare = embed_stage.embed_frames(trim_borders(works[0].frames))
    assert np.allclose(bare.embeddings, works[0].embeddings, atol=1e-3)


def test_a_video_the_model_cannot_take_fails_alone(media, frames_stage, embed_stage):
    good, bad, empty = work_for(media["gradio_a"]), work_for(media["bikes"], "bad"), work_for(media["bikes"], "empty")
    frames_stage.process_batch([good, bad])
    bad.frames = bad.frames[..., :2]  # two channels: the batched forward fails, then this one alone
    empty.frames = np.zeros((0, 8, 8, 3), np.uint8)
    embed_stage.stats.take()
    embed_stage.process_batch([good, bad, empty])
    assert good.item.status == "new" and good.descriptor is not None
    assert bad.item.status == "failed" and bad.item.errors["embed"].startswith("embed_error: ")
    assert empty.item.errors["embed"].startswith("no_frames")
    stats = embed_stage.stats.take()
    assert (stats["ok"], stats["embed_error"], stats["no_frames"]) == (1, 1, 1)


def test_config_is_checked():
    with pytest.raises(ValueError, match="model must be"):
        EmbedStage(model="resnet", precision="auto")
    with pytest.raises(ValueError, match="precision"):
        EmbedStage(model="efficientnet-lite0", precision="int3")
    with pytest.raises(ValueError, match="dedup_features"):
        EmbedStage(model="efficientnet-lite0", precision="auto", dedup_features="sepia")
