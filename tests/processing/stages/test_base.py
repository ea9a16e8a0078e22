"""The Stage base owns the loop: decided videos skipped, failures recorded with their code, all counted."""

from __future__ import annotations

from crawler.errors import MediaError
from crawler.items import VideoItem
from processing.stages.base import Resources, Stage
from processing.work import Work


class Lengths(Stage):
    """A small real stage: the length of the item's title, or a reason it cannot."""

    name = "lengths"
    resources = Resources(num_cpus=0.5)
    error_code = "lengths_error"

    def process_one(self, work):
        if work.item.title is None:
            raise MediaError("no_title", "nothing to measure")
        if work.item.title == "bug":
            raise ZeroDivisionError("a bug in the stage")
        work.item.labels["length"] = len(work.item.title)
        return "long" if len(work.item.title) > 5 else None


def _work(title, n):
    return Work(VideoItem(url=f"u{n}", source="t", video_id=str(n), title=title))


def test_one_shape_for_every_outcome():
    works = [_work("short", 1), _work("a longer one", 2), _work(None, 3), _work("bug", 4), _work("x", 5)]
    works[4].item.reject("filters", "too_long")
    stage = Lengths.from_config(cfg=None)  # the base's from_config: the class with its defaults
    out = stage.process_batch(works)

    assert out is works
    assert [w.item.labels.get("length") for w in works] == [5, 12, None, None, None]
    assert works[2].item.errors == {"lengths": "no_title: nothing to measure"}
    assert works[3].item.status == "failed"
    assert works[3].item.errors["lengths"] == "lengths_error: ZeroDivisionError: a bug in the stage"
    assert works[4].item.errors == {"filters": "too_long"}  # decided before: passed by untouched
    stats = stage.stats.take()
    assert stats | {"seconds": 0} == {"ok": 1, "long": 1, "no_title": 1, "lengths_error": 1, "videos": 4,
                                     "seconds": 0}  # fmt: skip
    assert stats["seconds"] >= 0 and stage.stats.take() == {}  # taken: counting starts again


def test_resources_are_read_from_the_class():
    from processing.stages.embed import EmbedStage
    from processing.stages.frames import FramesStage

    assert Lengths.resources == Resources(num_cpus=0.5, num_gpus=0)
    assert FramesStage.resources.num_gpus == 0 and EmbedStage.resources.num_gpus == 1
