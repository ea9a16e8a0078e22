"""`export --clips`: one clip per scene, stream-copied on a keyframe, re-encoded between keyframes."""

import argparse
import json

import av
import pytest

from crawler.items import VideoItem
from processing.catalogue import SqliteCatalogue
from processing.catalogue.clips import keyframe_times
from processing.catalogue.export import ExportFilter, Exporter
from processing.stages.scenes import ScenesStage
from processing.work import Work
from tests.processing.catalogue.corpus import make_doc, vid
from tests.processing.cutclip import CUT, DURATION, FIRST_FRAMES, SECOND_FRAMES, two_shot_clip


@pytest.fixture(scope="module")
def scenes_stage():
    stage = ScenesStage()
    stage.setup()
    return stage


def scanned_doc(name, path, stage, **fields):
    """The catalogue document of ``path`` with the scenes the real stage finds in it."""
    work = Work(VideoItem(url=f"file://{path}", source="local", path=str(path), video_id=vid(name)))
    stage.process_batch([work])
    return make_doc(name, name, path=path, fps=25.0, duration=DURATION, width=320, height=180, **fields) | {
        "scenes": work.item.scenes, "models": work.item.models}


def frames_of(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("keyframe_at_cut", [False, True])
def test_two_shots_make_two_clips_of_the_right_length(data_dir, tmp_path, scenes_stage, keyframe_at_cut):
    src = two_shot_clip(tmp_path / "two.mp4", keyframe_at_cut)
    assert (CUT in keyframe_times(src)) is keyframe_at_cut
    with SqliteCatalogue() as cat:
        cat.upsert([scanned_doc("two", src, scenes_stage)])
        report = Exporter(cat, tmp_path / "out", "clips").run()
    clips = [json.loads(x) for x in (tmp_path / "out" / "clips.jsonl").read_text().splitlines()]
    assert report["rows"] == len(clips) == 2 and report["videos"] == 1
    first, second = clips
    assert (first["clip_id"], second["clip_id"]) == (f"{vid('two')}-0000", f"{vid('two')}-0001")
    assert first["start"] == 0 and abs(first["end"] - CUT) <= 0.5 and second["start"] == first["end"]
    # a scene is copied only when both its ends are keyframes (or the video's end): here, the cut
    assert [c["mode"] for c in clips] == ["copy", "copy"] if keyframe_at_cut else ["reencode", "reencode"]
    assert first["duration"] == pytest.approx(CUT, abs=0.1)
    assert second["duration"] == pytest.approx(DURATION - CUT, abs=0.1)
    # frame-exact, copied or re-encoded
    assert (frames_of(first["path"]), frames_of(second["path"])) == (FIRST_FRAMES, SECOND_FRAMES)
    for clip in clips:  # each clip is one shot: the scene detector finds no cut inside it
        assert scenes_stage.detect(clip["path"])[0] == []
        with av.open(clip["path"]) as c:
            assert c.streams.audio and c.streams.video[0].width == 320


def test_videos_without_scenes_are_counted_and_old_clips_removed(data_dir, tmp_path, scenes_stage, media):
    src = two_shot_clip(tmp_path / "two.mp4", keyframe_at_cut=True)
    with SqliteCatalogue() as cat:
        cat.upsert([scanned_doc("two", src, scenes_stage),
                    make_doc("old", "Processed before scenes", path=media["bikes"])])
        Exporter(cat, tmp_path / "out", "clips").run()
        assert len(list((tmp_path / "out" / "clips").iterdir())) == 2
        cat.upsert([scanned_doc("two", src, scenes_stage, status="duplicate", duplicate_of=vid("old"))])

        from processing.catalogue.cli import register

        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["export", "--clips", "--json", "--out", str(tmp_path / "out")])
        assert args.func(args) == 0
    assert list((tmp_path / "out" / "clips").iterdir()) == []  # the video is no longer kept: its clips go
    assert (tmp_path / "out" / "clips.jsonl").read_text() == ""


def test_a_filter_and_nsfw_apply_to_clips(data_dir, tmp_path, scenes_stage, capsys):
    src = two_shot_clip(tmp_path / "two.mp4", keyframe_at_cut=True)
    with SqliteCatalogue() as cat:
        cat.upsert([scanned_doc("two", src, scenes_stage, labels={"nsfw": {"present": True, "score": 0.8}}),
                    scanned_doc("short", src, scenes_stage) | {"duration": 2.0}])
        report = Exporter(cat, tmp_path / "out", "clips").run()
        assert report["filtered"] == {"nsfw": 1} and report["rows"] == 2
        report = Exporter(cat, tmp_path / "out", "clips", nsfw=False, filters=ExportFilter(min_duration=5)).run()
        assert report["filtered"] == {"duration": 1} and report["rows"] == 2
        lines = (tmp_path / "out" / "clips.jsonl").read_text().splitlines()
        assert {json.loads(x)["video_id"] for x in lines} == {vid("two")}
