"""ScenesStage on real clips: a known cut found, uncut clips one scene, bad media recorded, never raised."""

import pytest

from crawler.items import FAILED, VideoItem
from processing.catalogue import SqliteCatalogue
from processing.catalogue.elastic import ElasticCatalogue, to_es_doc
from processing.pipeline import STEPS
from processing.stages.scenes import ScenesStage, scenes_from_cuts
from processing.work import Work
from tests.processing.cutclip import CUT, DURATION, two_shot_clip
from tests.processing.stages.conftest import work_for


@pytest.fixture(scope="module")
def stage():
    s = ScenesStage()
    s.setup()
    return s


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    return two_shot_clip(tmp_path_factory.mktemp("cut") / "two_shots.mp4", keyframe_at_cut=False)


def test_the_known_cut_is_found_and_the_scenes_cover_the_video(stage, cut_clip):
    work = work_for(cut_clip)
    stage.process_batch([work])
    scenes = work.item.scenes
    assert len(scenes) == 2, scenes
    assert scenes[0]["start"] == 0.0 and abs(scenes[0]["end"] - CUT) <= 0.5
    assert scenes[1]["start"] == scenes[0]["end"] and scenes[1]["end"] == pytest.approx(DURATION, abs=0.05)
    assert work.item.models["scenes"] == "ffmpeg-scene:0.3" and "scenes" not in work.item.errors
    assert stage.stats.take()["cuts"] == 1


def test_a_clip_without_cuts_is_one_scene_and_real_cuts_split_bikes(stage, media):
    world, bikes = work_for(media["gradio_world"]), work_for(media["bikes"])
    stage.process_batch([world, bikes])
    assert world.item.scenes == [{"start": 0.0, "end": pytest.approx(30.03, abs=0.05)}]
    starts = [s["start"] for s in bikes.item.scenes]
    # its hard cuts (looked at); the one at 9.68 s leaves a 0.32 s last scene: merged (min 0.5 s)
    assert starts == pytest.approx([0.0, 1.2, 5.48, 7.48], abs=0.05)
    assert bikes.item.scenes[-1]["end"] == pytest.approx(10.0, abs=0.05)
    assert all(a["end"] == b["start"] for a, b in zip(bikes.item.scenes, bikes.item.scenes[1:]))


def test_bad_media_is_recorded_on_the_item_and_never_fails_it(stage, media, tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(media["bikes"].read_bytes()[:3000])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    works = [work_for(p) for p in (truncated, empty, text)] + [Work(VideoItem(url="x", source="t"))]
    stage.process_batch(works)
    for w in works:
        assert w.item.status != FAILED and w.item.scenes == []
        assert w.item.errors["scenes"].split(":")[0] in ("undecodable", "empty_file", "no_path", "no_frames")
    assert works[1].item.errors["scenes"].startswith("empty_file")
    decided = work_for(media["bikes"])
    decided.item.fail("frames", "undecodable")
    stage.process_batch([decided])
    assert decided.item.scenes == []  # a decided video is passed by


def test_a_decode_past_its_time_budget_keeps_the_cuts_so_far(media):
    s = ScenesStage(max_decode_seconds=1e-6)
    s.setup()
    work = work_for(media["bikes"])
    work.item.duration = 10.0
    s.process_batch([work])
    assert work.item.scenes[-1]["end"] == 10.0 and work.item.errors["scenes"].startswith("partial")


def test_config_is_checked_and_read_from_the_worker_config(stage_cfg):
    for bad in ({"threshold": 0}, {"threshold": 1.5}, {"min_scene_seconds": -1}, {"analysis_width": 4}):
        with pytest.raises(ValueError):
            ScenesStage(**bad)
    built = ScenesStage.from_config(stage_cfg)
    assert (built.threshold, built.min_scene_seconds) == (stage_cfg.scenes_threshold, stage_cfg.scenes_min_seconds)


def test_short_scenes_merge_into_the_one_before():
    merged = scenes_from_cuts([0.2, 3.0, 3.1, 9.8], 10.0, 0.5)
    assert merged == [{"start": 0.0, "end": 3.0}, {"start": 3.0, "end": 10.0}]
    assert scenes_from_cuts([], 4.0) == [{"start": 0.0, "end": 4.0}]


def test_it_runs_on_the_decode_pool_right_after_frames():
    names = [(s.name, s.pool) for s in STEPS]
    assert names[:2] == [("frames", "decode"), ("scenes", "decode")]


def test_the_catalogue_keeps_the_scenes(stage, cut_clip, tmp_path):
    work = work_for(cut_clip, video_id="a" * 64)
    stage.process_batch([work])
    doc = work.item.to_dict() | {"status": "indexed"}
    with SqliteCatalogue(tmp_path / "c.sqlite") as cat:
        cat.upsert([doc])
        assert cat.get("a" * 64)["scenes"] == work.item.scenes
    assert ElasticCatalogue._doc(to_es_doc(doc))["scenes"] == work.item.scenes  # kept in the stored `doc`
    assert VideoItem.from_dict(doc).scenes == work.item.scenes
