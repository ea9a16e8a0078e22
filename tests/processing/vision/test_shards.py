"""ShardedIndex: FrameIndex shards as one index (routing, merged results, snapshots), and the decision on it."""

from __future__ import annotations

import numpy as np
import pytest

from processing.vision.frame_index import FrameIndex, IndexOptions
from processing.vision.shards import ShardedIndex, global_ids, merge_search, shard_of
from tests.processing.vision.test_frame_index import unit, vid, videos_like_frames


def spread(i: int) -> int:
    """A 64-bit hash per number, bits spread (Fibonacci hashing)."""
    return (i * 0x9E3779B97F4A7C15) & (2**64 - 1)


def test_shard_of_is_stable_and_spreads():
    assert shard_of(vid(1), 4) == shard_of(vid(1), 4)  # blake2b, not Python's salted hash
    counts = np.bincount([shard_of(vid(i), 4) for i in range(4000)], minlength=4)
    assert counts.min() > 850  # ~1000 each


def test_sharded_results_equal_one_index():
    rng = np.random.default_rng(0)
    vecs = videos_like_frames(300, 64, rng)
    flat = IndexOptions(codec="flat")
    one = FrameIndex(64, 10_000, flat)
    three = ShardedIndex.empty(3, 64, 10_000, flat)
    records = [(vid(i), vecs[i], float(i), 1.0, f"{spread(i):016x}") for i in range(300)]
    one.add_many(records)
    nums = three.add_many(records)
    assert len(three) == 300 and three.ntotal == 2400
    assert sorted(len(s) for s in three.shards) != [0, 0, 300]  # spread over the shards
    for i in (0, 17, 299):
        assert three.by_id[vid(i)] == nums[i] and three.videos[nums[i]]["video_id"] == vid(i)
    q = unit(vecs[17] + 0.3 / 8 * rng.standard_normal(vecs[17].shape))
    s1, i1 = one.search(q, 10)
    s3, i3 = three.search(q, 10)
    np.testing.assert_allclose(s1, s3, atol=1e-5)  # the same neighbours, whichever shard holds them
    ids_one = {one.videos[int(n)]["video_id"] for n in (i1 >> 8).ravel()}
    ids_three = {three.videos[int(n)]["video_id"] for n in (i3 >> 8).ravel()}
    assert ids_one == ids_three
    best1, best3 = one.best_per_video(q), three.best_per_video(q)
    assert {one.videos[n]["video_id"] for n in best1} == {three.videos[n]["video_id"] for n in best3}
    target = f"{spread(17) ^ 0b101:016x}"
    assert [three.videos[n]["video_id"] for n, _ in three.hashes_within(target, 2)] == [vid(17)]
    assert three.videos[three.nearest_hash(target, 2)[0]]["video_id"] == vid(17)
    assert np.abs(three.video_vectors(vid(17)) - vecs[17]).max() < 2e-3
    three.remove(vid(17))
    assert vid(17) not in {three.videos[n]["video_id"] for n in three.best_per_video(q)}
    assert three.purge([vid(18), vid(19)]) == 2 and len(three) == 297


def test_merge_functions_for_remote_shards():
    """What a caller with remote shards does: map each shard's ids to global ones, merge."""
    a = (np.array([[0.9, 0.5]], np.float32), np.array([[0 << 8 | 1, 3 << 8]], np.int64))
    b = (np.array([[0.7, 0.0]], np.float32), np.array([[2 << 8, -1]], np.int64))
    sims, ids = merge_search([(a[0], global_ids(a[1], 0, 2)), (b[0], global_ids(b[1], 1, 2))], k=3)
    assert sims[0].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert (ids >> 8).tolist() == [[0, 2 * 2 + 1, 3 * 2]] and (ids & 255).tolist() == [[1, 0, 0]]


def test_sharded_snapshot_round_trip_and_shard_count_is_kept(tmp_path):
    rng = np.random.default_rng(1)
    vecs = videos_like_frames(60, 64, rng)
    index = ShardedIndex.empty(2, 64, 10_000)
    index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(60))
    uri = "memory://bucket/sharded"
    index.save(uri)
    back = ShardedIndex.load(uri, 2, 64, 10_000)
    assert len(back) == 60 and [len(s) for s in back.shards] == [len(s) for s in index.shards]
    assert np.abs(back.video_vectors(vid(5)) - vecs[5]).max() < 2e-3
    with pytest.raises(ValueError, match="shards"):
        ShardedIndex.load(uri, 3, 64, 10_000)
    index.add(vid(60), vecs[0])
    before = [s.generation for s in index.shards]
    index.save(uri, extras={"clusters.json": b"{}"})  # only the shard that changed is written again
    changed = shard_of(vid(60), 2)
    assert [s.generation for s in index.shards] == [g + (k == changed) for k, g in enumerate(before)]
    assert ShardedIndex.load_extra(uri, "clusters.json") == b"{}" and len(ShardedIndex.load(uri, 2, 64, 10_000)) == 61
    index.save(tmp_path / "local")
    assert (tmp_path / "local" / "shards.json").exists()
    assert (tmp_path / "local" / "shard-001-of-002" / "meta.json").exists()


def test_the_near_dup_decision_runs_on_shards():
    """NearDupIndex (processing/stages/neardup.py) decides the same clusters on 3 shards as on one index."""
    from processing.stages.neardup import Candidate, MatchRule, NearDupIndex

    rng = np.random.default_rng(2)
    originals = videos_like_frames(40, 128, rng)
    copies = unit(originals[:10] + 0.3 / np.sqrt(128) * rng.standard_normal(originals[:10].shape))
    rule = MatchRule(frame_threshold=0.8, min_match=0.5, phash_max_distance=-1)
    outcomes = []
    for frames in (FrameIndex(128, 10_000), ShardedIndex.empty(3, 128, 10_000)):
        index = NearDupIndex(rule, frames)
        got = [index.decide(Candidate(vid(i), originals[i], 1.0, 10.0)).outcome for i in range(40)]
        got += [index.decide(Candidate(vid(100 + i), copies[i], 0.5, 10.0)).duplicate_of for i in range(10)]
        outcomes.append(got)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:40] == ["kept"] * 40 and outcomes[0][40:] == [vid(i) for i in range(10)]
