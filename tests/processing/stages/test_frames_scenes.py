"""Frames and scenes from ONE decode: FramesStage's pass feeds the scene detector, the scenes step reuses it.

What a user checks: the sampled frames are at the times asked for and the cuts are where the
clip was cut, the same as the stages give on their own (each its own decode), and the scenes
step does not read the file again.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from processing.stages.frames import FramesStage
from processing.stages.scenes import ScenesStage
from tests.processing.cutclip import CUT, DURATION, two_shot_clip
from tests.processing.stages.conftest import work_for


def _frames(**kw) -> FramesStage:
    stage = FramesStage(**{"frames_per_video": 8, "audio_seconds": 0} | kw)
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def scenes():
    stage = ScenesStage()
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    return two_shot_clip(tmp_path_factory.mktemp("cut") / "two_shots.mp4", keyframe_at_cut=False)


@pytest.fixture(scope="module")
def ten_fps(tmp_path_factory):
    """4 s of testsrc at 10 fps (frame k at k/10 s), one keyframe only."""
    clip = tmp_path_factory.mktemp("tenfps") / "tenfps.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=4",
                    "-c:v", "libx264", "-g", "100", "-pix_fmt", "yuv420p", str(clip)], check=True)  # fmt: skip
    return clip


def test_one_pass_finds_the_cut_and_the_scenes_step_does_not_decode_again(scenes, cut_clip, tmp_path):
    clip = tmp_path / "moved.mp4"
    clip.write_bytes(cut_clip.read_bytes())
    work = work_for(clip)
    _frames(scenes=scenes).process_batch([work])
    assert work.item.status == "new", work.item.errors
    assert [s["start"] for s in work.item.scenes] == [0.0, pytest.approx(CUT, abs=0.05)]
    assert work.item.scenes[-1]["end"] == pytest.approx(DURATION, abs=0.05)
    clip.unlink()  # the scenes step must take them from the item: the file is gone
    scenes.stats.take()
    scenes.process_batch([work])
    assert "scenes" not in work.item.errors and len(work.item.scenes) == 2
    stats = scenes.stats.take()
    assert (stats["ok"], stats["cuts"]) == (1, 1)


@pytest.mark.parametrize("name", ["bikes", "gradio_world", "bigbuckbunny"])
def test_one_pass_gives_the_frames_and_cuts_of_two_separate_decodes(scenes, media, name):
    alone, shared = work_for(media[name]), work_for(media[name])
    _frames().process_batch([alone])  # seek sampling
    scenes.process_batch([alone])  # its own decode (no loop filter)
    _frames(scenes=scenes).process_batch([shared])
    assert shared.frame_times == alone.frame_times
    assert np.array_equal(shared.frames, alone.frames)
    a, b = alone.item.scenes, shared.item.scenes
    assert len(a) == len(b) and all(abs(x["start"] - y["start"]) <= 0.05 for x, y in zip(a, b)), (a, b)
    assert shared.item.models["scenes"] == alone.item.models["scenes"] == scenes.model


def test_frames_are_at_the_expected_timestamps(scenes, ten_fps):
    work = work_for(ten_fps)
    _frames(frames_per_video=4, scenes=scenes).process_batch([work])
    assert work.frame_times == [0.5, 1.5, 2.5, 3.5]  # (i + 0.5) * 4 s / 4: frames 5, 15, 25, 35
    assert work.frames.shape == (4, 224, 299, 3)  # 320x240 scaled to a 224 short side
    assert work.item.scenes == [{"start": 0.0, "end": 4.0}]  # a test pattern: no cut


def test_scenes_past_their_budget_are_partial_and_the_frames_still_cover_the_video(media):
    work = work_for(media["bikes"])
    _frames(scenes=ScenesStage(max_decode_seconds=1e-6)).process_batch([work])
    assert work.item.status == "new" and len(work.frames) == 8  # the rest sought after the pass
    assert work.frame_times[0] < 1.25 and work.frame_times[-1] > 8.75
    assert work.item.errors["scenes"].startswith("partial")
    step = ScenesStage()
    step.process_batch([work])
    assert step.stats.take()["partial"] == 1


def test_the_scenes_step_is_shared_only_when_it_is_a_scenes_stage(stage_cfg):
    from dataclasses import replace

    assert isinstance(FramesStage.from_config(stage_cfg).scenes, ScenesStage)
    assert FramesStage.from_config(stage_cfg).scenes.threshold == stage_cfg.scenes_threshold
    other = replace(stage_cfg, stages=stage_cfg.stages | {"scenes": f"{__name__}:NotScenes"})
    assert FramesStage.from_config(other).scenes is None  # a replaced scenes step decodes on its own


class NotScenes(FramesStage):  # any stage that is not a ScenesStage
    name = "scenes"


@pytest.fixture(scope="module")
def four_shots(tmp_path_factory):
    """4 shots of ffmpeg test sources concatenated (cuts at 1.6, 2.8, 4.8 s), encoded the way that
    is hardest for reference-frames-only scoring: no keyframe at the cuts, 3 B-frames."""
    clip = tmp_path_factory.mktemp("shots") / "four_shots.mp4"
    shots = [("testsrc2", 1.6), ("mandelbrot", 1.2), ("smptehdbars", 2.0), ("testsrc", 1.6)]
    inputs = [a for src, d in shots for a in ("-f", "lavfi", "-t", str(d), "-i", f"{src}=size=320x180:rate=25")]
    graph = "".join(f"[{i}:v]format=yuv420p,setsar=1[v{i}];" for i in range(4)) + "[v0][v1][v2][v3]concat=n=4[v]"
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]",
                    "-c:v", "libx264", "-x264-params", "keyint=250:scenecut=0:bframes=3", str(clip)],
                   check=True, timeout=60)  # fmt: skip
    return clip


def test_known_cuts_of_a_concat_are_found_alone_and_on_the_frames_pass(scenes, four_shots):
    assert [round(c, 2) for c in scenes.detect(str(four_shots))[0]] == pytest.approx([1.6, 2.8, 4.8], abs=0.13)
    every = ScenesStage(reference_frames_only=False)
    assert every.detect(str(four_shots))[0] == pytest.approx([1.6, 2.8, 4.8], abs=0.01)  # exact: every frame
    work = work_for(four_shots)
    _frames(scenes=scenes).process_batch([work])
    starts = [s["start"] for s in work.item.scenes]
    assert starts == pytest.approx([0.0, 1.6, 2.8, 4.8], abs=0.13)  # <= 3 frames late at 25 fps
