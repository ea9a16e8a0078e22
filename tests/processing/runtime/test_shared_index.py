"""One near-dup decision for any number of drivers: the shared index actor, and two `work` processes at once.

Real Ray (a local one for the actor test; the machine's shared local Ray that the drivers
start themselves for the subprocess test), real Redis, real clips, the project's own stages.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from crawler.items import VideoItem
from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.runtime import localray
from processing.runtime.index import NAMESPACE, SharedIndex, index_name
from processing.runtime.stream import WorkStream
from processing.runtime.writer import CatalogueWriter
from processing.stages.neardup import Candidate, LocalIndexes, MatchRule, NearDupStage
from processing.work import Work, WorkBatch
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.dedup_groups import make_groups, queued_item
from tests.processing.runtime.test_runner import _queue




def _frames(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(4, 16)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_every_driver_finds_the_one_index_and_the_last_one_out_ends_it(ray_session, data_dir, key_prefix, redis_url):
    cfg = ProcessingConfig.from_settings(num_gpus=0)
    a, b = SharedIndex.for_config(cfg), SharedIndex.for_config(cfg)  # two drivers' handles
    where_a, where_b = a.attach("driver-a"), b.attach("driver-b")
    assert where_a["pid"] == where_b["pid"] and where_b["drivers"] == 2
    assert where_a["journal"]  # REDIS_URL set: every decision journalled
    assert len(where_a["shards"]) == (cfg.index_shards if cfg.index_shards > 1 else 0)  # 1: frames in the decider
    assert ray_session.get_actor(index_name(key_prefix), namespace=NAMESPACE)
    original, copy_ = _frames(1), _frames(1) + 0.01
    (first,) = a.decide("m", [Candidate("low", copy_, quality=1.0, duration=10.0)])
    (second,) = b.decide("m", [Candidate("high", original, quality=9.0, duration=10.0)])  # the other driver
    assert (first.outcome, second.outcome) == ("kept", "kept_better")
    assert [(u.video_id, u.duplicate_of) for u in second.updates] == [("low", "high")]
    assert a.states({"m": ["low", "high", "nope"]}) == {"low": ("high", pytest.approx(1.0, abs=0.01)),
                                                        "high": ("high", None), "nope": None}  # fmt: skip
    a.detach("driver-a")
    assert b.states({"m": ["low"]})["low"][0] == "high"  # still up: driver b is attached
    b.detach("driver-b")  # the last one: the index is flushed and the actor ends
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray_session.get_actor(index_name(key_prefix), namespace=NAMESPACE)
        except ValueError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the index actor outlived its last driver")
    c = SharedIndex.for_config(cfg)
    assert c.attach("driver-c")["models"] == {}  # a new actor: it loads models when asked
    (again,) = c.decide("m", [Candidate("low", copy_, quality=1.0, duration=10.0)])  # a replay, from the flush
    assert (again.outcome, again.duplicate_of) == ("already_duplicate", "high")
    c.detach("driver-c")


# -- the writer follows the index: two drivers' writers, in the order that races -----------------
def _video(vid: str, seed: int, quality: int, duration: float, tmp) -> Work:
    """A work as the near-dup stage gets it: frame embeddings of a model, probe metadata."""
    item = VideoItem(url=f"https://example.org/{vid}.mp4", source="web", video_id=vid, status="queued",
                     width=quality, height=1, bit_rate=1, duration=duration)  # quality = width here
    return Work(item, embeddings=_frames(seed) + 0.01 * (1 + quality % 7), dedup_model="m",
                descriptor=np.full(4, 0.5, np.float32))  # fmt: skip


def _drivers(tmp_path, redis_client, cfg):
    """Two drivers' neardup stages and writers on one index service and one catalogue."""
    cat = SqliteCatalogue(tmp_path / "c.sqlite")
    svc = LocalIndexes(tmp_path / "index", MatchRule(0.8, 0.5, -1), approx_threshold=1000, flush_seconds=3600)
    relabelled = []
    out = []
    for _ in range(2):
        stage = NearDupStage.from_config(cfg, index_dir=tmp_path / "index", phash_max_distance=-1, index=svc)
        stage.setup()
        out.append((stage, CatalogueWriter(cat, redis_client, cfg.keys, index=svc, relabel=relabelled.append)))
    return cat, out, relabelled


def test_a_document_written_after_another_driver_demoted_it_is_rewritten(redis_client, key_prefix, tmp_path):
    cfg = ProcessingConfig.from_settings(num_gpus=0, data_dir=tmp_path)
    cat, ((stage_a, writer_a), (stage_b, writer_b)), _ = _drivers(tmp_path, redis_client, cfg)
    x, y = _video("x", 1, 10, 10.0, tmp_path), _video("y", 1, 90, 10.0, tmp_path)
    stage_a.process_batch([x])  # driver A: x is kept...
    stage_b.process_batch([y])  # ...then driver B: y is the better copy and demotes x
    assert [(u.video_id, u.duplicate_of) for u in y.updates] == [("x", "y")]
    writer_b.write(WorkBatch([y]))  # B writes first: x has no document yet, its update waits
    assert cat.get("x") is None and cat.get("y")["status"] == "indexed"
    writer_a.write(WorkBatch([x]))  # A writes x as it decided (kept), then asks the index
    assert (cat.get("x")["status"], cat.get("x")["duplicate_of"]) == ("duplicate", "y")
    assert Ledger(redis_client, cfg.keys).counts() == {"indexed": 1, "duplicate": 1}


def test_a_promoted_duplicate_is_written_indexed_and_put_back_for_labels(redis_client, key_prefix, tmp_path):
    cfg = ProcessingConfig.from_settings(num_gpus=0, data_dir=tmp_path)
    cat, ((stage, writer), _), relabelled = _drivers(tmp_path, redis_client, cfg)
    b, c = _video("b", 1, 50, 9.7, tmp_path), _video("c", 1, 80, 9.4, tmp_path)
    writer.write(WorkBatch(stage.process_batch([b, c])))
    assert (cat.get("b")["status"], cat.get("b")["duplicate_of"]) == ("duplicate", "c")
    assert cat.get("c")["status"] == "indexed"
    a = _video("a", 1, 10, 10.0, tmp_path)  # the longest: c (0.6 s shorter) is out of the running, b is the best left
    writer.write(WorkBatch(stage.process_batch([a])))
    docs = {v: cat.get(v) for v in "abc"}
    assert {v: (d["status"], d["duplicate_of"]) for v, d in docs.items()} == {
        "a": ("duplicate", "b"), "b": ("indexed", None), "c": ("duplicate", "b")}
    assert [item.video_id for item in relabelled] == ["b"]  # never labelled while a duplicate


def _work(env, log):
    return subprocess.Popen([PYTHON, "-m", "processing", "work", "--until-empty", "--num-gpus", "0",
                             "--batch-size", "2", "--no-progress"], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)  # fmt: skip


@pytest.mark.slow
def test_two_work_processes_at_once_index_each_group_once_with_its_original(
        redis_client, key_prefix, data_dir, tmp_path_factory):  # fmt: skip
    clips = make_groups(tmp_path_factory.getbasetemp() / "dedup_groups")
    items = {c.name: queued_item(c) for c in clips}
    for clip in clips[7:] + clips[:7]:  # copies first: every original demotes a cluster and re-points it
        _queue(redis_client, items[clip.name])
    env = project_env(LABELERS="", PROCESSING_NUM_WORKERS=1)
    logs = [data_dir / "work-1.log", data_dir / "work-2.log"]
    workers = [_work(env, log) for log in logs]  # two drivers at once, one stream, one DATA_DIR
    try:
        codes = [w.wait(900) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n-----\n".join(o[-3000:] for o in outputs)
    processed = [int(o.split("processed ")[1].split()[0]) for o in outputs]
    assert sum(processed) >= len(clips) and all(processed), processed  # both drivers took a share

    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
    docs = {name: cat.get(item.video_id) for name, item in items.items()}
    by_id = {d["video_id"]: name for name, d in docs.items()}
    indexed = sorted(name for name, d in docs.items() if d["status"] == "indexed")
    assert indexed == sorted(c.group for c in clips if c.kind == "original")  # exactly the 7 originals
    for clip in clips:
        doc = docs[clip.name]
        if clip.kind != "original":
            assert doc["status"] == "duplicate", (clip.name, doc["status"], doc.get("errors"))
            assert by_id.get(doc["duplicate_of"]) == clip.group, (clip.name, doc["duplicate_of"])
    assert cat.counts() == {"indexed": 7, "duplicate": 28}
    assert Ledger(redis_client, key_prefix).counts() == {"indexed": 7, "duplicate": 28}
    st = WorkStream.from_config(redis_client, ProcessingConfig.from_settings(num_gpus=0)).stats()
    assert (st["pending"], st["backlog"], st["dead"]) == (0, 0, 0)
    # the shared local Ray goes away with its last driver
    folder = localray.ray_dir(data_dir)
    deadline = time.monotonic() + 60
    while localray.running(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert localray.running(folder) is None, (folder / "keeper.log").read_text()[-2000:]
