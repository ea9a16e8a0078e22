"""FramesStage on the real clips in tests/data and on broken files: frames, thumbnail, audio, reasons."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from processing.stages.frames import FramesStage
from tests.processing.stages.conftest import work_for


def test_frames_cover_the_whole_video(media, frames_stage):
    work = work_for(media["gradio_world"])  # 30 s, with an audio track
    frames_stage.process_batch([work])
    n = frames_stage.frames_per_video
    assert work.item.status == "new", work.item.errors
    assert work.frames.shape[0] == n and work.frames.dtype == np.uint8 and work.frames.shape[-1] == 3
    assert min(work.frames.shape[1:3]) == 224
    times = work.frame_times
    assert times == sorted(times) and times[0] < 30 / n and times[-1] > 30 - 30 / n
    assert (frames_stage.thumbnail_dir / "gradio_world.jpg").stat().st_size > 1000
    assert work.item.thumbnail_path.endswith("gradio_world.jpg")
    assert work.audio.dtype == np.float32 and work.audio_rate == 16000
    assert len(work.audio) == 30 * 16000


def test_frames_without_audio_track(media, frames_stage):
    work = work_for(media["bikes"])
    frames_stage.process_batch([work])
    assert work.frames.shape[0] == frames_stage.frames_per_video and work.audio is None


def test_unseekable_stream_falls_back_to_sequential_decode(media, frames_stage, tmp_path):
    raw = tmp_path / "raw.h264"  # an elementary stream: no container index, no duration
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["bikes"]), "-c:v", "copy", "-bsf:v",
                    "h264_mp4toannexb", "-f", "h264", str(raw)], check=True)  # fmt: skip
    work = work_for(raw)
    frames_stage.process_batch([work])
    assert work.item.status == "new", work.item.errors
    assert len(work.frames) == frames_stage.frames_per_video and work.frame_times[-1] > work.frame_times[0]


def test_bad_media_fails_with_reason_counted_and_the_batch_goes_on(media, frames_stage, tmp_path):
    good = media["carphone_pristine"].read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])  # moov at the end: unreadable
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("<html>not a video</html>\n" * 50)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(1).bytes(200_000))
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(tmp_path / "audio.m4a")],
                   check=True)  # fmt: skip
    names = ["truncated.mp4", "zero.mp4", "text.mp4", "noise.mp4", "audio.m4a", "missing.mp4"]
    works = [work_for(tmp_path / n) for n in names] + [work_for(media["carphone_pristine"])]
    frames_stage.stats.take()  # counters of earlier tests
    frames_stage.process_batch(works)
    reasons = {w.item.video_id: w.item.errors.get("frames", "").split(":")[0] for w in works}
    assert reasons == {
        "truncated": "undecodable", "zero": "empty_file", "text": "undecodable",
        "noise": "undecodable", "audio": "no_video_stream", "missing": "missing_file",
        "carphone_pristine": "",
    }  # fmt: skip
    assert all(w.item.status == "failed" for w in works[:-1])
    assert works[-1].item.status == "new" and len(works[-1].frames) == frames_stage.frames_per_video
    stats = frames_stage.stats.take()  # what travels with the batch to `status`
    assert {k: v for k, v in stats.items() if k != "seconds"} == {
        "ok": 1, "undecodable": 3, "empty_file": 1, "no_video_stream": 1, "missing_file": 1, "videos": 7}
    assert stats["seconds"] > 0


def test_a_decided_video_is_not_decoded(media, frames_stage):
    work = work_for(media["bikes"])
    work.item.fail("probe", "timeout")
    frames_stage.process_batch([work])
    assert work.frames is None and work.item.errors == {"probe": "timeout"}


def test_config_is_checked():
    with pytest.raises(ValueError, match="frames_per_video"):
        FramesStage(frames_per_video=0)
    with pytest.raises(ValueError, match="audio_rate"):
        FramesStage(frames_per_video=8, audio_rate=100)


def test_audio_is_decoded_only_when_a_labeler_listens(data_dir):
    from processing.config import ProcessingConfig
    from processing.stages.frames import FramesStage

    listening = FramesStage.from_config(ProcessingConfig.from_settings(labelers=("imagenet", "speech"), num_gpus=0))
    deaf = FramesStage.from_config(ProcessingConfig.from_settings(labelers=("imagenet", "ocr"), num_gpus=0))
    assert listening.audio_seconds == 30.0 and deaf.audio_seconds == 0.0
