"""LabelsStage with the packaged labelers on real clips; a failing labeler is recorded, the others run."""

from __future__ import annotations

import pytest

from processing.stages.labels import LabelsStage
from tests.processing.stages.conftest import work_for


@pytest.fixture(scope="module")
def labels_stage(stage_cfg):
    stage = LabelsStage.from_config(stage_cfg)  # the default labelers of settings.LABELERS
    stage.setup()
    return stage


@pytest.fixture(scope="module")
def labelled(media, frames_stage, embed_stage, labels_stage):
    """Three real clips through frames -> embed -> labels."""
    works = [work_for(media[n]) for n in ("carphone_pristine", "gradio_a", "gradio_world")]
    labels_stage.stats.take()
    for s in (frames_stage, embed_stage, labels_stage):
        s.process_batch(works)
    return {w.item.video_id: w for w in works}


def test_packaged_labelers_run_for_real(labelled, labels_stage, stage_cfg):
    person, text, globe = labelled["carphone_pristine"], labelled["gradio_a"], labelled["gradio_world"]
    assert stage_cfg.labelers == ("imagenet", "ocr", "nsfw", "faces", "speech")
    for work in labelled.values():
        assert work.item.status == "new" and not work.item.errors, work.item.errors
        assert set(work.item.labels) == set(stage_cfg.labelers)
        for name, out in work.item.labels.items():
            assert out["model"] == work.item.models[name] and "error" not in out
    for work in labelled.values():  # no tag below its threshold (the top class is not kept regardless)
        assert all(t["score"] >= 0.1 for t in work.item.labels["imagenet"]["tags"])
    tags = [t["name"] for t in person.item.labels["imagenet"]["tags"]]
    assert {"bow tie", "suit", "Windsor tie"} & set(tags[:3])  # a man in a suit and tie
    assert person.item.labels["faces"]["present"] is True
    assert "THANKS FOR WATCHING" in text.item.labels["ocr"]["text"].upper()
    assert person.item.labels["ocr"]["present"] is False
    assert all(w.item.labels["nsfw"]["present"] is False for w in labelled.values())
    assert 0.0 <= globe.item.labels["speech"]["score"] <= 1.0
    assert isinstance(globe.item.labels["speech"]["present"], bool)
    stats = labels_stage.stats.take()
    assert stats["ok"] == stats["videos"] == 3
    assert all(stats[f"{name}/ok"] == 3 for name in stage_cfg.labelers)


def test_a_failing_labeler_is_recorded_and_others_run(labelled):
    work = labelled["gradio_a"]
    stage = LabelsStage(labelers=["faces", "caption"], options={"caption": {"model": "/nonexistent/blip"}})
    work.item.labels.clear()
    stage.process_batch([work])
    assert work.item.status == "new"
    assert work.item.labels["caption"]["error"].startswith("setup_failed")
    assert work.item.errors["labels.caption"].startswith("setup_failed")
    assert "present" in work.item.labels["faces"]
    assert stage.stats.take() | {"seconds": 0} == {"ok": 1, "faces/ok": 1, "caption/error": 1, "videos": 1,
                                                  "seconds": 0}


def test_a_video_without_frames_fails_at_labels(stage_cfg):
    from crawler.items import VideoItem
    from processing.work import Work

    work = Work(VideoItem(url="u", source="t", video_id="x"))
    LabelsStage(labelers=["faces"]).process_batch([work])
    assert work.item.status == "failed" and work.item.errors["labels"].startswith("no_frames")


def test_config_is_checked():
    with pytest.raises(ValueError, match="unknown labelers"):
        LabelsStage(labelers=["imagenet", "vibes"])
    with pytest.raises(ValueError, match="needs a BLIP model"):
        LabelsStage(labelers=["caption"])
    with pytest.raises(ValueError, match="options given for labelers that are not enabled"):
        LabelsStage(labelers=["faces"], options={"ocr": {}})
