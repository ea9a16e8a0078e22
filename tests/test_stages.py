"""Frames, embed and labels stages on the real clips in tests/data and on broken files."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from crawler.items import VideoItem
from processing.stages.base import Work
from processing.stages.embed import EmbedStage, trim_borders
from processing.stages.frames import FramesStage
from processing.stages.labels import LabelsStage


def work_for(path, video_id=None) -> Work:
    return Work(VideoItem(url=f"file://{path}", source="test", path=str(path), video_id=video_id or path.stem))


@pytest.fixture(scope="module")
def frames_stage(tmp_path_factory):
    stage = FramesStage(frames_per_video=8, thumbnail_dir=tmp_path_factory.mktemp("thumbs"))
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def embed_stage():
    stage = EmbedStage()
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def labelled(media, frames_stage, embed_stage):
    """Three real clips through frames -> embed -> labels (default, packaged labelers)."""
    works = [work_for(media[n]) for n in ("carphone_pristine", "gradio_a", "gradio_world")]
    stage = LabelsStage()
    for s in (frames_stage, embed_stage, stage):
        s.process_batch(works)
    return {w.item.video_id: w for w in works}


def test_frames_cover_the_whole_video(media, frames_stage):
    work = work_for(media["gradio_world"])  # 30 s, with an audio track
    frames_stage.process_batch([work])
    assert work.item.status == "new", work.item.errors
    assert work.frames.shape[0] == 8 and work.frames.dtype == np.uint8 and work.frames.shape[-1] == 3
    assert min(work.frames.shape[1:3]) == 224
    times = work.frame_times
    assert times == sorted(times) and times[0] < 3.5 and times[-1] > 26.5
    assert (frames_stage.thumbnail_dir / "gradio_world.jpg").stat().st_size > 1000
    assert work.item.thumbnail_path.endswith("gradio_world.jpg")
    audio = work.extras["audio"]
    assert audio.dtype == np.float32 and len(audio) == 30 * 16000


def test_frames_without_audio_track(media, frames_stage):
    work = work_for(media["bikes"])
    frames_stage.process_batch([work])
    assert work.frames.shape[0] == 8 and "audio" not in work.extras


def test_unseekable_stream_falls_back_to_sequential_decode(media, frames_stage, tmp_path):
    raw = tmp_path / "raw.h264"  # an elementary stream: no container index, no duration
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["bikes"]), "-c:v", "copy", "-bsf:v",
                    "h264_mp4toannexb", "-f", "h264", str(raw)], check=True)
    work = work_for(raw)
    frames_stage.process_batch([work])
    assert work.item.status == "new", work.item.errors
    assert len(work.frames) == 8 and work.frame_times[-1] > work.frame_times[0]


def test_bad_media_fails_with_reason_and_the_batch_goes_on(media, frames_stage, tmp_path):
    good = media["carphone_pristine"].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])  # moov at the end: unreadable
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("<html>not a video</html>\n" * 50)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(200_000))
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(tmp_path / "audio.m4a")], check=True)
    names = ["truncated.mp4", "zero.mp4", "text.mp4", "noise.mp4", "audio.m4a", "missing.mp4"]
    works = [work_for(tmp_path / n) for n in names] + [work_for(media["carphone_pristine"])]
    frames_stage.process_batch(works)
    reasons = {w.item.video_id: w.item.errors.get("frames", "").split(":")[0] for w in works}
    assert reasons == {
        "truncated": "undecodable", "zero": "empty_file", "text": "undecodable",
        "noise": "undecodable", "audio": "no_video_stream", "missing": "missing_file",
        "carphone_pristine": "",
    }
    assert all(w.item.status == "failed" for w in works[:-1])
    assert works[-1].item.status == "new" and len(works[-1].frames) == 8


def test_embed_stage_descriptor_logits_and_skips(media, frames_stage, embed_stage):
    works = [work_for(media["bikes"]), work_for(media["gradio_a"]), work_for(media["bikes"], "decided")]
    works[2].item.fail("probe", "timeout")
    frames_stage.process_batch(works)
    embed_stage.process_batch(works)
    for work in works[:2]:
        assert work.embeddings.shape == (8, 1280)
        assert np.allclose(np.linalg.norm(work.embeddings, axis=1), 1.0, atol=1e-4)
        assert np.linalg.norm(work.descriptor) == pytest.approx(1.0, abs=1e-5)
        assert work.extras["logits"].shape == (8, 1000)
        assert work.item.embedding_model == "efficientnet-lite0" == work.item.models["embedding"]
        assert work.extras["dedup_embeddings"].shape == (8, 1280)
    assert works[2].embeddings is None and works[2].item.errors == {"probe": "timeout"}
    # the bare model call gives the stage's embeddings for the same frames
    bare = embed_stage.embed_frames(trim_borders(works[0].frames))
    assert np.allclose(bare.embeddings, works[0].embeddings, atol=1e-3)


def test_trim_borders_removes_letterbox_bars():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, 20:80, 10:190] = 128
    assert trim_borders(frames).shape == (2, 60, 180, 3)
    dark = np.zeros((2, 50, 50, 3), np.uint8)
    assert trim_borders(dark).shape == dark.shape


def test_packaged_labelers_run_for_real(labelled):
    person, text, globe = labelled["carphone_pristine"], labelled["gradio_a"], labelled["gradio_world"]
    for work in labelled.values():
        assert work.item.status == "new" and not work.item.errors, work.item.errors
        assert set(work.item.labels) == {"imagenet", "ocr", "nsfw", "faces", "speech"}
        for name, out in work.item.labels.items():
            assert out["model"] == work.item.models[name] and "error" not in out
    tags = [t["name"] for t in person.item.labels["imagenet"]["tags"]]
    assert {"bow tie", "suit", "Windsor tie"} & set(tags[:3])  # a man in a suit and tie
    assert person.item.labels["faces"]["present"] is True
    assert "THANKS FOR WATCHING" in text.item.labels["ocr"]["text"].upper()
    assert person.item.labels["ocr"]["present"] is False
    assert all(w.item.labels["nsfw"]["present"] is False for w in labelled.values())
    assert 0.0 <= globe.item.labels["speech"]["score"] <= 1.0
    assert isinstance(globe.item.labels["speech"]["present"], bool)


def test_a_failing_labeler_is_recorded_and_others_run(labelled):
    work = labelled["gradio_a"]
    stage = LabelsStage(labelers=["faces", "caption"], options={"caption": {"model": "/nonexistent/blip"}})
    work.item.labels.clear()
    stage.process_batch([work])
    assert work.item.status == "new"
    assert work.item.labels["caption"]["error"].startswith("setup_failed")
    assert work.item.errors["labels.caption"].startswith("setup_failed")
    assert "present" in work.item.labels["faces"]


def test_stage_config_is_checked(tmp_path):
    with pytest.raises(ValueError, match="frames_per_video"):
        FramesStage(frames_per_video=0)
    with pytest.raises(ValueError, match="model must be"):
        EmbedStage(model="resnet")
    with pytest.raises(ValueError, match="precision"):
        EmbedStage(precision="int3")
    with pytest.raises(ValueError, match="unknown labelers"):
        LabelsStage(labelers=["imagenet", "vibes"])
    with pytest.raises(ValueError, match="needs a BLIP model"):
        LabelsStage(labelers=["caption"])
