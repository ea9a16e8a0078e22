"""FrameIndex (faiss): exact then HNSW, tombstones, persistence, and the perceptual-hash lookup."""

from __future__ import annotations

import numpy as np
import pytest

from processing.vision.frame_index import FrameIndex


def test_frame_index_switches_to_hnsw_and_tombstones(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = FrameIndex(64, approx_threshold=100)
    for v in range(30):
        index.add(f"v{v}", vecs[v * 10 : (v + 1) * 10])
    assert index.approximate and index.ntotal == 300
    sims, rows = index.search(vecs[:20], k=10)
    recall = np.mean([r in row for r, row in zip(range(20), rows)])
    assert recall >= 0.95 and sims[0, 0] == pytest.approx(1.0, abs=1e-4)
    index.remove("v0")
    assert 0 not in index.best_per_video(vecs[:10])
    index.save(tmp_path / "idx")
    back = FrameIndex.load(tmp_path / "idx", 64, approx_threshold=100)
    assert len(back) == 29 and back.approximate


def test_hash_lookup_is_exact_over_many_videos():
    rng = np.random.default_rng(1)
    index = FrameIndex(4, approx_threshold=1000)
    values = rng.integers(0, 2**63, size=20_000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    index.videos = [{"video_id": f"v{i}", "alive": True} for i in range(len(values))]
    index.by_id = {v["video_id"]: i for i, v in enumerate(index.videos)}
    for i, value in enumerate(values):
        index._set_hash(i, f"{int(value):016x}")
    target = int(values[12_345]) ^ 0b1011  # 3 bits away from one kept video
    assert index.nearest_hash(f"{target:016x}", 10) == (12_345, 3)
    index.remove("v12345")
    assert index.nearest_hash(f"{target:016x}", 10) is None  # a removed video's hash leaves the index
    assert index.nearest_hash(None, 10) is None and index.nearest_hash("zz", 10) is None


def test_dim_and_threshold_are_checked():
    with pytest.raises(ValueError, match="dim"):
        FrameIndex(0, 100)
    with pytest.raises(ValueError, match="approx_threshold"):
        FrameIndex(4, 0)
