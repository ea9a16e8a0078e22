"""FrameIndex (faiss): codes in memory, exact vectors on disk, IVF past a size, tombstones, hashes, snapshots."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from processing.vision.frame_index import FrameIndex, IndexOptions


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def videos_like_frames(n: int, dim: int, rng, frames: int = 8) -> np.ndarray:
    """(n, frames, dim) unit vectors shaped like frame embeddings: a shared mean (unrelated frames
    score ~0.3), a decaying spectrum, frames of one video around its centre (cosine ~0.8)."""
    scale = np.sqrt(np.arange(1, dim + 1) ** -1.0 / np.sum(np.arange(1, dim + 1) ** -1.0) * 0.71)
    mean = unit(rng.standard_normal(dim)) * np.sqrt(0.29)
    centres = mean + rng.standard_normal((n, 1, dim)) * scale
    return unit(centres + 0.6 * rng.standard_normal((n, frames, dim)) * scale)


def vid(i: int) -> str:
    return f"{i:064x}"  # a sha256-shaped id


def test_index_switches_to_ivf_and_tombstones(tmp_path):
    rng = np.random.default_rng(0)
    vecs = videos_like_frames(40, 64, rng, frames=10)
    index = FrameIndex(64, approx_threshold=100, options=IndexOptions(codec="flat"))
    for v in range(30):
        index.add(f"v{v}", vecs[v])
    assert index.approximate and index.ntotal == 300 and type(index.index).__name__ == "IndexIVFFlat"
    sims, ids = index.search(vecs[:20, 0], k=10)
    assert np.mean(ids[:, 0] >> 8 == np.arange(20)) >= 0.95 and sims[0, 0] == pytest.approx(1.0, abs=1e-4)
    index.remove("v0")
    assert 0 not in index.best_per_video(vecs[0]) and "v0" in index.by_id and not index.videos[0]["alive"]
    index.save(tmp_path / "idx")
    back = FrameIndex.load(tmp_path / "idx", 64, approx_threshold=100)
    assert len(back) == 29 and back.approximate
    assert back.best_per_video(vecs[3]).keys() >= {3}


def test_default_codec_keeps_under_1kb_per_video_and_decisions_exact(tmp_path):
    rng = np.random.default_rng(1)
    vecs = videos_like_frames(3000, 512, rng)
    index = FrameIndex(512, approx_threshold=200_000)  # defaults: random 96-d codes + exact vectors on disk
    index.add_many((vid(i), vecs[i], 1.0, 10.0, None) for i in range(len(vecs)))
    assert index.codec.code_bytes == 96 and index.ntotal == 24_000
    assert index.memory_bytes() / len(index) <= 1024  # was 8 x 1280 x 4 = 40,960
    # the decisions read the exact vectors (float16 on disk), not the codes
    got = index.video_vectors(vid(7))
    assert got.shape == (8, 512) and np.abs(got - vecs[7]).max() < 2e-3
    # a copy of a stored video (each frame re-drawn around the original, cosine ~0.9) is proposed
    copy = unit(vecs[7] + 0.45 / np.sqrt(512) * rng.standard_normal(vecs[7].shape))
    proposed = index.best_per_video(copy, 32)
    best = max(proposed, key=lambda n: proposed[n].max())
    assert index.videos[best]["video_id"] == vid(7)
    exact = (copy @ vecs[7].T).max(axis=1)
    assert np.abs(proposed[best] - exact).max() < 0.1  # codes: close, not exact
    assert np.abs((copy @ index.video_vectors(vid(7)).T).max(axis=1) - exact).max() < 2e-3


def test_codes_alone_keep_frame_similarities_close(tmp_path):
    """Without the exact store, ``video_vectors`` gives the decoded codes: a copy's frame
    similarities to its original (where the vote threshold is) stay within a few hundredths
    with the random 96-d codes, and are exact with flat ones."""
    rng = np.random.default_rng(2)
    vecs = videos_like_frames(200, 512, rng)
    vecs[1] = unit(vecs[0] + 0.45 / np.sqrt(512) * rng.standard_normal(vecs[0].shape))  # a copy: cosine ~0.9
    for codec, bound in (("random", 0.06), ("flat", 1e-5)):
        index = FrameIndex(512, 100_000, IndexOptions(codec=codec, exact=False))
        index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(len(vecs)))
        a, b = index.video_vectors(vid(0)), index.video_vectors(vid(1))
        exact = np.diag(vecs[0] @ vecs[1].T)
        err = np.abs(np.diag(a @ b.T) - exact)
        assert exact.min() > 0.85 and err.max() < bound, (codec, err.max())
        if codec == "random":
            assert err.max() > 1e-3  # lossy, and not by much


def test_pca_codec_fits_on_the_first_vectors_and_reloads(tmp_path):
    rng = np.random.default_rng(3)
    vecs = videos_like_frames(200, 256, rng)
    index = FrameIndex(256, 100_000, IndexOptions(codec="pca", code_dim=64, train_size=400))
    index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(40))
    assert not index.codec.trained and type(faiss.downcast_index(index.index.index)).__name__ == "IndexFlatIP"
    index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(40, 200))
    assert index.codec.trained and index.codec.projection.shape == (256, 64) and index.ntotal == 1600
    before = index.search(vecs[5], 5)
    index.save(tmp_path / "pca")
    back = FrameIndex.load(tmp_path / "pca", 256, 100_000)
    assert np.array_equal(back.codec.projection, index.codec.projection)
    np.testing.assert_array_equal(back.search(vecs[5], 5)[1], before[1])


def test_hash_lookup_is_exact_over_many_videos():
    rng = np.random.default_rng(1)
    index = FrameIndex(4, approx_threshold=100_000, options=IndexOptions(exact=False))
    values = rng.integers(0, 2**63, size=20_000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    one = np.eye(4, dtype=np.float32)[:1]
    index.add_many((f"v{i}", one, 0.0, 0.0, f"{int(value):016x}") for i, value in enumerate(values))
    target = int(values[12_345]) ^ 0b1011  # 3 bits away from one kept video
    assert index.nearest_hash(f"{target:016x}", 10) == (12_345, 3)
    assert index.hashes_within(f"{target:016x}", 10) == [(12_345, 3)]
    index.remove("v12345")
    assert index.nearest_hash(f"{target:016x}", 10) is None  # a removed video's hash leaves the index
    assert index.nearest_hash(None, 10) is None and index.nearest_hash("zz", 10) is None


def test_purge_drops_codes_and_zeroes_exact_rows(tmp_path):
    rng = np.random.default_rng(4)
    vecs = videos_like_frames(20, 128, rng)
    index = FrameIndex(128, 1000)
    index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(20))
    start = int(index.videos.cols["vstart"][3])
    assert index.purge([vid(3), "unknown"]) == 1
    assert index.ntotal == 19 * 8 and 3 not in set(index.owners.tolist())
    assert not index.exact.read(start, 8).any()  # the takedown's vectors are gone from disk too
    assert index.video_vectors(vid(3)).shape == (0, 128)
    index.add(vid(3), vecs[3])  # it may come back (a new number)
    assert index.by_id[vid(3)] == 20 and index.videos[20]["alive"]


def test_snapshot_to_a_uri_survives_a_crash_before_the_manifest(tmp_path):
    """Files first, manifest last: a save that dies before its manifest leaves the previous
    snapshot loadable; a restarted index elsewhere (another cache dir) gets every vector back."""
    rng = np.random.default_rng(5)
    vecs = videos_like_frames(300, 64, rng)
    uri = "memory://bucket/near-dup/model-a"
    index = FrameIndex(64, 1000)
    index.add_many((vid(i), vecs[i], 0.0, 0.0, f"{i:016x}") for i in range(100))
    index.save(uri)
    import fsspec

    fs = fsspec.filesystem("memory")
    first_manifest = fs.cat_file("/bucket/near-dup/model-a/meta.json")
    index.add_many((vid(i), vecs[i], 0.0, 0.0, None) for i in range(100, 300))
    index.save(uri)
    fs.pipe_file("/bucket/near-dup/model-a/meta.json", first_manifest)  # as if the second save died here
    back = FrameIndex.load(uri, 64, 1000, cache_dir=tmp_path / "node-b")
    assert len(back) == 100 and back.ntotal == 800 and back.videos[7]["phash"] == f"{7:016x}"
    assert np.abs(back.video_vectors(vid(99)) - vecs[99]).max() < 2e-3
    back.add(vid(150), vecs[150])
    back.save(uri)  # and it carries on from there
    again = FrameIndex.load(uri, 64, 1000, cache_dir=tmp_path / "node-c")
    assert len(again) == 101 and np.abs(again.video_vectors(vid(150)) - vecs[150]).max() < 2e-3
    names = {p.rsplit("/", 1)[-1] for p in fs.ls("/bucket/near-dup/model-a", detail=False)}
    assert sum(n.startswith("frames-") for n in names) == 2  # this generation and the one before


def test_snapshot_to_a_file_uri_and_extras(tmp_path):
    rng = np.random.default_rng(6)
    vecs = videos_like_frames(10, 64, rng)
    index = FrameIndex(64, 1000)
    index.add_many((vid(i), vecs[i], float(i), 5.0, None) for i in range(10))
    index.save(f"file://{tmp_path}/snap", extras={"clusters.json": b'{"members": {}}'})
    meta = json.loads((tmp_path / "snap" / "meta.json").read_text())
    assert meta["format"] == 2 and meta["dim"] == 64 and meta["videos"] == 10
    assert FrameIndex.load_extra(tmp_path / "snap", "clusters.json") == b'{"members": {}}'
    back = FrameIndex.load(tmp_path / "snap", 64, 1000)
    assert back.videos[4]["quality"] == 4.0 and back.exact.folder == tmp_path / "snap"
    with pytest.raises(ValueError, match="dim"):
        FrameIndex.load(tmp_path / "snap", 32, 1000)


def test_previous_format_is_converted_on_load(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    flat = faiss.IndexFlatIP(4)
    flat.add(np.eye(4, dtype=np.float32)[[0, 0, 1, 2]])
    faiss.write_index(flat, str(folder / "frames.faiss"))
    np.save(folder / "owners.npy", np.array([0, 0, 1, 2]))
    videos = [{"video_id": "a", "quality": 1.0, "duration": 2.0, "alive": True, "phash": "00000000000000ff"},
              {"video_id": "b", "quality": 1.0, "duration": 2.0, "alive": False},
              {"video_id": "c", "quality": 3.0, "duration": 4.0, "alive": True}]  # fmt: skip
    (folder / "meta.json").write_text(json.dumps({"dim": 4, "approx_threshold": 1000, "videos": videos}))
    index = FrameIndex.load(folder, 4, 1000)
    assert len(index) == 2 and index.ntotal == 3 and index.videos[index.by_id["a"]]["phash"] == "00000000000000ff"
    assert np.allclose(index.video_vectors("c"), np.eye(4)[[2]], atol=1e-3)


def test_dim_threshold_and_options_are_checked():
    with pytest.raises(ValueError, match="dim"):
        FrameIndex(0, 100)
    with pytest.raises(ValueError, match="approx_threshold"):
        FrameIndex(4, 0)
    with pytest.raises(ValueError, match="codec"):
        FrameIndex(4, 10, IndexOptions(codec="lsh"))
    with pytest.raises(ValueError, match="nprobe"):
        IndexOptions(nprobe=0)
