"""The same 35 clips (7 groups) in several arrival orders and batch sizes give the same clusters and canonicals.

Real clips (tests/processing/dedup_groups.py: originals cut from tests/data and bench
sources, copies made by bench/dedup.py's generator), the real frames and embed stages once,
then the real NearDupStage (its index in this process) on fresh copies of the works for
every order: originals first, copies first, two shuffles; batches of 1, 8 and 35. Every run
must give the 7 groups as clusters, each with its original as canonical, every duplicate
pointing at that canonical, and the same similarities.
"""

from __future__ import annotations

import copy
import random

import pytest

from crawler.items import DUPLICATE
from processing.config import ProcessingConfig
from processing.pipeline import load_stage_class
from processing.stages.neardup import NearDupStage
from processing.work import Work
from tests.processing.dedup_groups import make_groups, queued_item

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Every clip's Work after frames and embed (done once), and clip name by video id."""
    clips = make_groups(tmp_path_factory.getbasetemp() / "dedup_groups")
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path_factory.mktemp("data"), num_gpus=0)
    works = [Work(queued_item(c)) for c in clips]
    for name in ("frames", "embed"):
        stage = load_stage_class(cfg.stages[name]).from_config(cfg)
        stage.setup()
        stage.process_batch(works)
    assert not [w.item.errors for w in works if w.item.decided]
    return cfg, clips, works


def run_order(cfg, works: list[Work], batch: int, folder) -> dict[str, tuple[str, float | None]]:
    """video id -> (canonical, similarity) after the near-dup stage saw ``works`` in this order."""
    stage = NearDupStage.from_config(cfg, index_dir=folder)
    stage.setup()
    works = [copy.deepcopy(w) for w in works]
    place: dict[str, tuple[str, float | None]] = {}
    for start in range(0, len(works), batch):
        chunk = stage.process_batch(works[start : start + batch])
        for w in chunk:  # the decision, then whatever later decisions changed (as the writer applies them)
            vid = w.item.video_id
            place[vid] = (w.item.duplicate_of, w.item.similarity) if w.item.status == DUPLICATE else (vid, None)
            for u in w.updates:
                place[u.video_id] = (u.duplicate_of or u.video_id, u.similarity)
    stage.teardown()
    return place


def test_clusters_and_canonicals_do_not_depend_on_order_or_batch_size(embedded, tmp_path):
    cfg, clips, works = embedded
    name = {w.item.video_id: c.name for c, w in zip(clips, works)}
    group = {c.name: c.group for c in clips}
    originals_first = list(works)
    orders = {"originals first": originals_first, "copies first": originals_first[7:] + originals_first[:7]}
    for seed in (1, 2):
        shuffled = originals_first[:]
        random.Random(seed).shuffle(shuffled)
        orders[f"shuffle {seed}"] = shuffled
    results = {}
    for (label, order), batch in zip(list(orders.items()) * 3, (1, 8, 35, 8, 1, 35, 35, 8, 1, 1, 35, 8)):
        place = run_order(cfg, order, batch, tmp_path / f"{label}-{batch}".replace(" ", "_"))
        results[(label, batch)] = {name[v]: (name[c], s) for v, (c, s) in place.items()}
    first = next(iter(results.values()))
    for key, result in results.items():
        assert result == first, key
    canonicals = {c for c, _ in first.values()}
    assert canonicals == set(c.group for c in clips)  # 7 clusters, each the group's original
    for clip_name, (canonical, similarity) in first.items():
        assert canonical == group[clip_name], (clip_name, canonical)
        assert (similarity is None) == (clip_name == canonical)
