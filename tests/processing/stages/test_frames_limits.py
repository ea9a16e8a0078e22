"""FramesStage refuses frames above ``max_pixels`` (MEDIA_MAX_PIXELS) before decoding, as ``too_large``."""

from __future__ import annotations

import subprocess

import pytest

from processing.config import ProcessingConfig
from processing.stages.frames import FramesStage
from tests.processing.stages.conftest import work_for


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A 640x480 clip made by FFmpeg, and the same file cut right after its header (no frame)."""
    root = tmp_path_factory.mktemp("big")
    clip = root / "vga.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=640x480:rate=10:duration=2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(clip)],
                   check=True)  # fmt: skip
    data = clip.read_bytes()
    header_only = root / "header_only.mp4"
    header_only.write_bytes(data[: data.index(b"mdat") + 4])  # the dimensions, and no frame at all
    return clip, header_only


def _stage(max_pixels: int) -> FramesStage:
    stage = FramesStage(frames_per_video=4, audio_seconds=0, max_pixels=max_pixels)
    stage.setup()
    return stage


def test_a_clip_above_the_cap_is_refused_with_too_large_and_counted(clips):
    clip, _ = clips
    stage = _stage(640 * 480 - 1)
    work = work_for(clip)
    stage.process_batch([work])
    assert work.item.status == "failed" and work.frames is None
    assert work.item.errors["frames"] == "too_large: 640x480 frames, over MEDIA_MAX_PIXELS=307199"
    assert stage.stats.take()["too_large"] == 1


def test_the_refusal_comes_before_any_decode(clips):
    _, header_only = clips
    work = work_for(header_only)
    _stage(640 * 480).process_batch([work])  # under the cap it is decoded: there is no frame
    assert work.item.errors["frames"].startswith("no_frames")
    work = work_for(header_only)
    _stage(100 * 100).process_batch([work])  # over it, the stream's dimensions are enough
    assert work.item.errors["frames"].startswith("too_large: 640x480")


def test_a_clip_at_the_cap_is_decoded(clips):
    clip, _ = clips
    work = work_for(clip)
    _stage(640 * 480).process_batch([work])
    assert work.item.status == "new" and len(work.frames) == 4


def test_the_cap_is_the_media_max_pixels_setting(tmp_path, monkeypatch):
    import settings

    monkeypatch.setattr(settings, "MEDIA_MAX_PIXELS", 1920 * 1080)
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=0)
    assert FramesStage.from_config(cfg).max_pixels == 1920 * 1080
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        FramesStage(frames_per_video=4, max_pixels=0)
