"""The shared near-dup index at scale: settings reach the frame index, the journal loses nothing,
snapshots go to a URI, and frame-code shard actors that are killed come back with every video.

Real Redis (the journal, the tombstones), real Ray (a local one for the module), moto's S3
server for the snapshots of the actor test (a stand-in, not S3: tests/objectstore.py).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import settings
from crawler.keys import RedisKeys
from crawler.takedowns import Tombstones
from processing.config import ProcessingConfig
from processing.runtime.index import NAMESPACE, IndexSpec, Journal, SharedIndex, index_name, shard_name
from processing.stages.neardup import Candidate, LocalIndexes, MatchRule, NearDupStage
from processing.vision.shards import shard_of
from tests.processing.vision.test_frame_index import unit, videos_like_frames

RULE = MatchRule(frame_threshold=0.8, min_match=0.5, phash_max_distance=-1)
DIM = 64


def vid(i: int) -> str:
    return f"{i:064x}"


def clips(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unrelated videos' frames and a noisy copy of each."""
    rng = np.random.default_rng(seed)
    originals = videos_like_frames(n, DIM, rng)
    return originals, unit(originals + 0.3 / np.sqrt(DIM) * rng.standard_normal(originals.shape))


def test_index_settings_change_what_the_stage_builds(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "NEARDUP_CODEC", "random", raising=False)
    monkeypatch.setattr(settings, "NEARDUP_CODE_DIM", 32, raising=False)
    monkeypatch.setattr(settings, "NEARDUP_NPROBE", 7, raising=False)
    built = {}
    for codec in ("random", "flat"):
        monkeypatch.setattr(settings, "NEARDUP_CODEC", codec)
        cfg = ProcessingConfig.from_settings(num_gpus=0, data_dir=tmp_path / codec)
        svc = NearDupStage.from_config(cfg).local_service()
        originals, _ = clips(1)
        svc.decide("m", [Candidate(vid(1), originals[0], 1.0, 10.0)])
        frames = svc.indexes["m"].frames
        built[codec] = (frames.codec.kind, frames.codec.out_dim, frames.options.nprobe)
        svc.flush()
        again = LocalIndexes(cfg.index_dir, RULE, 1000, options=cfg.neardup_index).index_for("m", DIM)
        assert again.frames.codec.kind == codec and len(again.frames) == 1  # reloaded as it was built
    assert built == {"random": ("random", 32, 7), "flat": ("flat", DIM, 7)}


def test_a_restarted_index_replays_its_journal_and_forgets_tombstoned_videos(redis_client, key_prefix):
    """LocalIndexes as the decider holds it, at a URI (memory://), journalling to Redis."""
    keys = RedisKeys(key_prefix)
    journal, tombstones = Journal(redis_client, keys.index_journal), Tombstones(redis_client, keys)
    uri = f"memory://{key_prefix}/index"

    def service():  # what a (re)started decider builds
        svc = LocalIndexes(uri, RULE, 1000, flush_seconds=3600, journal=journal, tombstones=tombstones)
        svc.recover()
        return svc

    originals, copies = clips(6)
    first = service()
    first.decide("m", [Candidate(vid(i), originals[i], 1.0, 10.0) for i in range(3)])
    first.flush()
    assert len(journal) == 0  # the flush covered everything
    first.decide("m", [Candidate(vid(i), originals[i], 1.0, 10.0) for i in range(3, 6)])
    first.decide("m", [Candidate(vid(100 + i), copies[i], 9.0, 10.0) for i in (0, 4)])  # better copies
    assert len(journal) == 5  # not flushed: the decider "dies" here
    second = service()
    assert second.states({"m": [vid(0), vid(100), vid(4), vid(104), vid(5)]}) == {
        vid(0): (vid(100), pytest.approx(1.0, abs=0.1)), vid(100): (vid(100), None),
        vid(4): (vid(104), pytest.approx(1.0, abs=0.1)), vid(104): (vid(104), None), vid(5): (vid(5), None)}
    tombstones.add(video_ids=[vid(4), vid(104)], reason="forget")  # a takedown: the URI has no forgotten.txt
    (late,) = second.decide("m", [Candidate(vid(4), originals[4], 1.0, 10.0)])
    assert late.outcome == "forgotten"
    second.flush()
    assert len(journal) == 0
    third = LocalIndexes(uri, RULE, 1000, tombstones=tombstones)  # from the snapshot alone
    assert third.index_for("m", DIM).state(vid(100)) == (vid(100), None)
    assert third.states({"m": [vid(4), vid(104), vid(5)]}) == {vid(4): None, vid(104): None, vid(5): (vid(5), None)}


# -- shard actors on a local Ray ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_s3(moto_endpoint):
    """A local Ray whose workers reach moto's S3 server (the AWS_* variables in their env)."""
    ray = pytest.importorskip("ray")
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def _wait_restarted(ray, name: str, old_pid: int, index: SharedIndex) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shards = {s.get("shard"): s for s in index.where()["shards"]}
        now = shards.get(name)
        if now and now.get("pid") not in (None, old_pid):
            return now
        time.sleep(0.2)
    pytest.fail(f"shard {name} did not come back")


def test_killed_shard_actors_come_back_with_every_video(ray_s3, s3, redis_url, key_prefix):
    ray = ray_s3
    uri = s3.make(f"idx-{key_prefix}") + "/index"
    index = SharedIndex(index_name(key_prefix), uri, RULE, 1000, 3600, shards=2, key_prefix=key_prefix,
                        redis_url=redis_url)  # fmt: skip
    where = index.attach("driver")
    assert [s["shard"] for s in where["shards"]] == ["0-of-2", "1-of-2"] and all(s["node_id"] for s in where["shards"])
    assert ray.get_actor(shard_name(key_prefix, 1, 2), namespace=NAMESPACE)
    originals, copies = clips(24)
    kept = index.decide("m", [Candidate(vid(i), originals[i], 1.0, 10.0) for i in range(24)])
    assert [d.outcome for d in kept] == ["kept"] * 24
    owners = {s: [i for i in range(24) if shard_of(vid(i), 2) == s] for s in (0, 1)}
    assert all(len(v) >= 6 for v in owners.values())  # both shards hold videos

    def copies_found(ids, index=index):
        got = index.decide("m", [Candidate(vid(100 + i), copies[i], 0.5, 10.0) for i in ids])
        return [d.duplicate_of for d in got]

    # a shard killed the way a node loss looks to Ray (restartable), then one killed by its pid
    before = {s["shard"]: s["pid"] for s in index.where()["shards"]}
    ray.kill(ray.get_actor(shard_name(key_prefix, 0, 2), namespace=NAMESPACE), no_restart=False)
    _wait_restarted(ray, "0-of-2", before["0-of-2"], index)
    assert copies_found(owners[0][:3]) == [vid(i) for i in owners[0][:3]]  # its snapshot (none yet) + the journal
    back = {s["shard"]: s for s in index.where()["shards"]}["0-of-2"]
    assert back["models"] == {"m": len(owners[0]) + sum(shard_of(vid(100 + i), 2) == 0 for i in owners[0][:3])}
    os.kill(before["1-of-2"], signal.SIGKILL)
    _wait_restarted(ray, "1-of-2", before["1-of-2"], index)
    assert copies_found(owners[1][:3]) == [vid(i) for i in owners[1][:3]]
    # the decider too: its clusters come back from the journal
    ray.kill(ray.get_actor(index_name(key_prefix), namespace=NAMESPACE), no_restart=False)
    assert copies_found(owners[0][3:5] + owners[1][3:5]) == [vid(i) for i in owners[0][3:5] + owners[1][3:5]]
    assert index.states({"m": [vid(100 + owners[1][0]), vid(owners[0][0])]}) == {
        vid(100 + owners[1][0]): (vid(owners[1][0]), pytest.approx(1.0, abs=0.1)),
        vid(owners[0][0]): (vid(owners[0][0]), None)}
    journal = Journal(ray_redis(redis_url), RedisKeys(key_prefix).index_journal)
    decided = [vid(i) for i in range(24)] + [vid(100 + i) for i in owners[0][:5] + owners[1][:5]]
    # nothing flushed yet: every candidate journalled (a call cut by the kill and retried may be there twice)
    assert {f["v"].decode() for _, f in journal.entries()} == set(decided)
    assert ray.get(index.handle().journalled.remote()) >= len(decided)
    index.detach("driver")  # the last driver: flush (journal trimmed), every actor ends
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        names = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE}
        if not any(key_prefix in n for n in names):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"index actors outlived their last driver: {names}")
    assert len(journal) == 0
    assert any(k.endswith("shards.json") for k in s3.keys(f"idx-{key_prefix}"))
    again = SharedIndex(index_name(key_prefix), uri, RULE, 1000, 3600, shards=2, key_prefix=key_prefix,
                        redis_url=redis_url)  # fmt: skip
    again.attach("later")  # a fresh decider and shards, from the snapshots on S3
    (replay,) = again.decide("m", [Candidate(vid(100 + owners[1][1]), copies[owners[1][1]], 0.5, 10.0)])
    assert (replay.outcome, replay.duplicate_of) == ("already_duplicate", vid(owners[1][1]))
    assert copies_found(owners[0][5:7] + owners[1][5:7], again) == [vid(i) for i in owners[0][5:7] + owners[1][5:7]]
    again.detach("later")


def ray_redis(url: str):
    import redis

    return redis.Redis.from_url(url)


def test_spec_asks_for_the_index_resource():
    spec = IndexSpec("x", RULE, 10, 1.0, resource="index")
    assert spec.actor_options("n", 3)["resources"] == {"index": 0.001}
    assert "resources" not in IndexSpec("x", RULE, 10, 1.0).actor_options("n", 3)


def test_sharded_batches_decide_as_the_index_in_one_process(ray_s3, redis_url, key_prefix, tmp_path):
    """A batch goes to the shards in one round trip (``RemoteShards.prefetch``); its decisions
    are still the one-at-a-time ones: later videos of a batch never crowd an earlier match out
    of the top k (k=4 here, batches of 8 copies of one video)."""
    rule = MatchRule(frame_threshold=0.8, min_match=0.5, phash_max_distance=-1, k=4)
    originals, copies = clips(6, seed=3)
    rng = np.random.default_rng(4)
    more = unit(originals[:1] + 0.2 / np.sqrt(DIM) * rng.standard_normal((8, *originals.shape[1:])))
    batches = [[Candidate(vid(i), originals[i], 1.0, 10.0) for i in range(1, 6)],
               [Candidate(vid(200 + j), more[j], 1.0 + j, 10.0) for j in range(8)],  # 8 copies of video 0...
               [Candidate(vid(0), originals[0], 0.5, 10.0), Candidate(vid(101), copies[1], 9.0, 10.0),
                Candidate(vid(102), copies[2], 0.1, 10.0), Candidate(vid(101), copies[1], 9.0, 10.0)]]  # ...then it
    local = LocalIndexes(tmp_path / "local", rule, 1000, flush_seconds=3600)
    shared = SharedIndex(index_name(key_prefix), str(tmp_path / "shared"), rule, 1000, 3600, shards=2,
                         key_prefix=key_prefix, redis_url=redis_url)  # fmt: skip
    shared.attach("driver")
    try:
        for batch in batches:
            want = [(d.outcome, d.duplicate_of, sorted((u.video_id, u.duplicate_of) for u in d.updates))
                    for d in local.decide("m", batch)]  # fmt: skip
            got = [(d.outcome, d.duplicate_of, sorted((u.video_id, u.duplicate_of) for u in d.updates))
                   for d in shared.decide("m", batch)]  # fmt: skip
            assert got == want
        assert want[0][0] == "duplicate" and want[1][0] == "kept_better" and want[3][0] == "already_indexed"
    finally:
        shared.detach("driver")


def test_forget_purges_every_shard_of_a_local_index(tmp_path, redis_client, key_prefix):
    from processing.forget import Forgetter
    from processing.vision.shards import ShardedIndex

    originals, _ = clips(10)
    index = ShardedIndex.empty(2, DIM, 1000)
    index.add_many((vid(i), originals[i], 1.0, 10.0, None) for i in range(10))
    index.save(tmp_path / "index" / "m")
    forgetter = Forgetter(None, redis_client, RedisKeys(key_prefix), index_dir=tmp_path / "index", owned_dirs=[])
    gone = [next(vid(i) for i in range(10) if shard_of(vid(i), 2) == s) for s in (0, 1)]  # one in each shard
    assert forgetter._purge_index(gone) == 2
    back = ShardedIndex.load(tmp_path / "index" / "m", 2, DIM, 1000)
    assert len(back) == 8 and not any(v in back.by_id and back.videos[back.by_id[v]]["alive"] for v in gone)
