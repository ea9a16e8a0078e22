"""FrameIndex: frame vectors and perceptual hashes of registered videos (faiss), the near-dup decision's memory.

What it keeps, per video (measured in bench/index.py, planned in docs/capacity.md):
- in memory, under 1 KB: one small code per frame (processing/vision/codecs.py: by default
  a fixed random rotation to 96 dims, 8 bits a dimension), its faiss id, and a ~80-byte
  record (processing/vision/video_table.py: id, quality, duration, hash, where its rows are);
- on local disk: the full vectors as float16 (processing/vision/exact_store.py, 2 bytes a
  dimension), read back by ``video_vectors`` so the pairwise frame similarities that decide a
  match are exact. The codes only PROPOSE candidates (``search``, ``best_per_video``).

Search is exact over the codes (a flat scalar-quantiser index) up to ``approx_threshold``
vectors, then IVF over the same codes (``nprobe`` of ~``4 sqrt(4n)`` lists searched, re-clustered
each time the index grows 4x). A vector's faiss id is ``video number << 8 | frame slot``. The
hashes sit in a uint64 column, so a hash lookup is one vectorised XOR + popcount.

Saved to a folder or an fsspec URI (``s3://``, ``gs://``, ``memory://``, ``file://``): new files
named by a generation first, then ``meta.json`` (the manifest) last, then the generation
before last is deleted; to a URI the files are staged locally and uploaded, and only the
exact-vector segments changed since the last upload go again. So a reader sees the old
snapshot or the new one, and an index actor restarted on another node loads the last one.
Several FrameIndex shards act as one through processing/vision/shards.py.

Takedowns (``python -m processing forget``): the index folder holds ``forgotten.txt``, one
forgotten video id a line; ``purge`` drops a video's codes and hash and zeroes its exact rows
at once (not only a tombstone). Whoever saves or edits the indexes holds
``locked(index_dir)``, so the near-dup actor and ``forget`` never write the files at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from processing.vision.codecs import KINDS as CODECS
from processing.vision.codecs import FrameCodec
from processing.vision.exact_store import ExactStore
from processing.vision.video_table import VideoTable

log = logging.getLogger(__name__)


def phash_value(value) -> int | None:
    """The 64-bit integer of a 16-hex-char perceptual hash, or None (missing or malformed)."""
    if not isinstance(value, str) or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


FORGOTTEN_FILE = "forgotten.txt"  # in the index dir: one forgotten video id a line


@contextmanager
def locked(index_dir: Path) -> Iterator[None]:
    """Hold the index dir's lock (``.lock``, flock) while saving or editing its indexes."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_forgotten(index_dir: Path) -> set[str]:
    """The forgotten video ids of an index dir (empty when there is none)."""
    try:
        return set((Path(index_dir) / FORGOTTEN_FILE).read_text().split())
    except FileNotFoundError:
        return set()


def add_forgotten(index_dir: Path, video_ids: Iterable[str]) -> None:
    """Append ids to the dir's forgotten list (hold ``locked(index_dir)``)."""
    new = sorted(set(video_ids) - read_forgotten(index_dir))
    if new:
        with open(Path(index_dir) / FORGOTTEN_FILE, "a") as fh:
            fh.write("".join(f"{v}\n" for v in new))
            fh.flush()
            os.fsync(fh.fileno())


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2.0 has it built in; else a byte table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8).reshape(-1, 8)].sum(axis=1)


_BYTE_BITS = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class IndexOptions:
    """How a FrameIndex stores vectors (``NEARDUP_CODEC``, ``NEARDUP_CODE_DIM``... in settings).

    The codec of a saved index is the one it was built with; ``nprobe`` and ``exact`` can change.
    """

    codec: str = "random"  # "random", "pca" or "flat" (processing/vision/codecs.py)
    code_dim: int = 96
    code_bits: int = 8
    train_size: int = 50_000  # pca: vectors kept exact (in memory) before the PCA is fit
    nprobe: int = 32  # IVF lists searched per query frame
    exact: bool = True  # full vectors on disk (float16): exact decisions
    seed: int = 0

    def __post_init__(self):
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {self.codec!r}")
        for name in ("code_dim", "train_size", "nprobe"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")


SLOT_BITS = 8  # vector id = video number << SLOT_BITS | frame slot
MAX_FRAMES = 1 << SLOT_BITS  # frames kept per video (more are subsampled evenly)
MAX_NLIST = 1 << 16  # IVF lists (a list number fits a uint16)


def _view(ptr, n: int, dtype) -> np.ndarray:
    """A numpy view of ``n`` elements at a faiss pointer (no copy)."""
    import faiss

    return faiss.rev_swig_ptr(ptr, n) if n else np.zeros(0, dtype)


def best_by_video(sims: np.ndarray, ids: np.ndarray, alive) -> dict[int, np.ndarray]:
    """Search results -> {live video number: (Q,) best similarity of each query frame to it};
    ``alive(nums)`` says which of an array of video numbers are live."""
    nums = np.where(ids >= 0, ids >> SLOT_BITS, -1)
    ok = nums >= 0
    ok[ok] = alive(nums[ok])
    out: dict[int, np.ndarray] = {}
    for q, j in zip(*np.nonzero(ok)):
        num = int(nums[q, j])
        best = out.get(num)
        if best is None:
            best = out[num] = np.full(len(sims), -1.0, np.float32)
        if sims[q, j] > best[q]:
            best[q] = sims[q, j]
    return out


def _nlist_for(n: int) -> int:
    """IVF lists for ~n vectors: the power of 2 nearest 4 sqrt(n) (faiss' rule of thumb)."""
    return int(min(MAX_NLIST, max(64, 2 ** round(np.log2(4 * np.sqrt(max(n, 1)))))))


class FrameIndex:
    """Frame codes (faiss), exact vectors (disk) and per-video records; see the module docstring.

    ``videos[num]`` is a video's record (``video_id``, ``quality``, ``duration``, ``alive``,
    ``phash`` while alive and hashed), ``by_id`` maps ids to numbers; removed videos are
    tombstoned (skipped in results) and their codes dropped when the index is compacted (on
    save, once a quarter of the stored vectors are dead).
    """

    META = "meta.json"
    FORMAT = 2

    def __init__(self, dim: int, approx_threshold: int, options: IndexOptions | None = None,
                 exact_dir: str | Path | None = None):  # fmt: skip
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(approx_threshold, int) or approx_threshold < 1:
            raise ValueError(f"approx_threshold must be a positive integer, got {approx_threshold!r}")
        self.dim = dim
        self.approx_threshold = approx_threshold
        self.options = options or IndexOptions()
        o = self.options
        self.codec = FrameCodec(o.codec, dim, o.code_dim, o.code_bits, o.seed)
        self.table = VideoTable()
        self.index = self._flat_codes()
        self.list_of = np.zeros(0, np.uint16)  # by row (vstart + slot): the IVF list of each vector; grown 1.25x
        self.rows = 0  # vectors ever stored (rows of the exact store and of list_of)
        self.ivf_built_at = 0  # vectors when the IVF was last clustered (0: flat)
        self.exact: ExactStore | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        if o.exact:
            self._bind_exact(Path(exact_dir) if exact_dir else None, rows=0)
        self._uploaded: dict[str, set[int] | None] = {}  # URI -> segments changed since uploaded there
        self.generation = 0
        self.dirty = False

    # -- views ---------------------------------------------------------------------------------------
    @property
    def videos(self) -> VideoTable:
        return self.table

    @property
    def by_id(self):
        return self.table.by_id

    @property
    def approximate(self) -> bool:
        return self.ivf_built_at > 0

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return int(self.table.col("alive").sum())

    @property
    def code_margin(self) -> float:
        """How far below the exact one a similarity from ``search``/``best_per_video`` may fall
        (0 while the codes are the float vectors). A caller proposing candidates by similarity
        should lower its bar by this much and decide on ``video_vectors``: random 96-d codes of
        real frames err by 0.026 (std), p99 0.087 (``bench/index.py --real``): 0.15 is ~6 sigma."""
        return 0.15 if self.codec.quantised else 0.0

    @property
    def owners(self) -> np.ndarray:
        """Video number of every stored vector (faiss order)."""
        return self._stored_ids() >> SLOT_BITS

    def memory_bytes(self) -> int:
        """Bytes this index holds in memory: codes, faiss ids, IVF centroids, list numbers, records."""
        code = self.codec.code_bytes if self.codec.trained else 4 * self.dim
        centroids = self.index.nlist * self.codec.out_dim * 4 if self.approximate else 0
        return self.ntotal * (code + 8) + centroids + self.list_of.nbytes + self.table.nbytes()

    # -- building ------------------------------------------------------------------------------------
    def _bind_exact(self, folder: Path | None, rows: int) -> None:
        if folder is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="frame-exact-")  # removed with the index
            folder = Path(self._scratch.name)
        self.exact = ExactStore(folder, self.dim, rows=rows)

    def _flat_codes(self, sample: np.ndarray | None = None):
        import faiss

        return faiss.IndexIDMap(self.codec.flat_index(sample))

    def add(self, video_id: str, vectors: np.ndarray, quality: float = 0.0, duration: float = 0.0,
            phash: str | None = None) -> int:  # fmt: skip
        """Register a video (idempotent for a live id: its number comes back); returns its number."""
        return self.add_many([(video_id, vectors, quality, duration, phash)])[0]

    def add_many(self, records: Iterable[tuple]) -> list[int]:
        """``add`` for many ``(video_id, vectors, quality, duration, phash)`` at once."""
        nums, blocks, out = [], [], []
        offset = self.rows
        for video_id, vectors, quality, duration, phash in records:
            num = self.table.find(video_id)
            if num is not None and self.table.cols["alive"][num]:
                out.append(num)  # a redelivered video
                continue
            vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
            if len(vectors) > MAX_FRAMES:
                vectors = vectors[np.linspace(0, len(vectors) - 1, MAX_FRAMES).round().astype(int)]
            num = self.table.append(video_id, float(quality or 0.0), float(duration or 0.0), phash_value(phash), offset)
            self.table.cols["nvec"][num] = len(vectors)
            offset += len(vectors)
            nums.append(num)
            blocks.append(vectors)
            out.append(num)
        if blocks:
            self._store(nums, blocks)
        return out

    def _store(self, nums: list[int], blocks: list[np.ndarray]) -> None:
        vectors = np.concatenate(blocks)
        ids = np.concatenate([(np.int64(num) << SLOT_BITS) | np.arange(len(b), dtype=np.int64)
                              for num, b in zip(nums, blocks)])  # fmt: skip
        if self.exact is not None:
            self.exact.append(vectors)
        self.rows += len(vectors)
        self._grow(len(vectors), vectors)
        self._add_codes(self.codec.project(vectors), ids)
        self.dirty = True

    def _add_codes(self, projected: np.ndarray, ids: np.ndarray) -> None:
        import faiss

        if not self.approximate:
            self.index.add_with_ids(projected, ids)
            lists = np.zeros(len(ids), np.uint16)
        else:
            _, assign = self.index.quantizer.search(projected, 1)
            assign = np.ascontiguousarray(assign[:, 0])
            self.index.add_core(len(ids), faiss.swig_ptr(projected), faiss.swig_ptr(ids), faiss.swig_ptr(assign))
            lists = assign.astype(np.uint16)
        start = self.rows - len(ids)  # rows of these vectors: the last ones stored
        if self.rows > len(self.list_of):  # grow by a quarter: no copy of every row per add
            grown = np.zeros(max(1024, self.rows + len(self.list_of) // 4), np.uint16)
            grown[: len(self.list_of)] = self.list_of
            self.list_of = grown
        self.list_of[start : self.rows] = lists

    def _grow(self, n_new: int, new: np.ndarray) -> None:
        """Before adding ``n_new`` vectors: fit the PCA, switch to IVF or re-cluster when due."""
        total = self.ntotal + n_new
        if not self.codec.trained and total > self.options.train_size:
            self._train_codec(new)
        if total > (4 * self.ivf_built_at if self.approximate else self.approx_threshold):
            self._build_ivf(total, self.codec.project(new))

    def _train_codec(self, new: np.ndarray) -> None:
        """PCA: fit on the vectors kept so far (+ the new ones), then store every one as codes."""
        ids = self._stored_ids()
        raw = self.index.index.reconstruct_n(0, self.ntotal) if self.ntotal else np.zeros((0, self.dim), np.float32)
        self.codec.train(np.concatenate([raw, new]))
        projected = self.codec.project(np.concatenate([raw, new]))
        self.index = self._flat_codes(projected)
        if len(ids):
            self.index.add_with_ids(self.codec.project(raw), ids)
        log.info("frame index codec fit on %d vectors: %s %d-d, %d bits", len(projected), self.codec.kind,
                 self.codec.out_dim, self.codec.bits)  # fmt: skip

    def _stored(self, chunk: int = 1 << 20) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(projected vectors as the codes give them back, ids), in chunks, of every stored vector."""
        import faiss

        if not self.approximate:
            inner = faiss.downcast_index(self.index.index)
            ids = self._stored_ids()
            for s in range(0, self.ntotal, chunk):
                yield inner.reconstruct_n(s, min(chunk, self.ntotal - s)), ids[s : s + chunk]
            return
        for codes, ids in self._lists():
            yield self._decode(codes), ids

    def _lists(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(codes, ids) of each non-empty IVF list."""
        il = self.index.invlists
        size = self.index.code_size
        for lst in range(self.index.nlist):
            n = il.list_size(lst)
            if n:
                yield _view(il.get_codes(lst), n * size, np.uint8).reshape(n, size), _view(il.get_ids(lst), n, np.int64)

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        if not self.codec.quantised:
            return np.ascontiguousarray(codes).view(np.float32).reshape(len(codes), -1)
        return self.index.sq.decode(np.ascontiguousarray(codes))

    def _stored_ids(self) -> np.ndarray:
        if not self.approximate:
            return _view(self.index.id_map.data(), self.index.id_map.size(), np.int64).copy()
        parts = [ids.copy() for _, ids in self._lists()]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _build_ivf(self, expected: int, new: np.ndarray) -> None:
        """(Re-)cluster into IVF lists for ~``expected`` vectors (``new``: projected vectors about
        to be added, part of the sample); the stored codes are moved, not re-learnt."""
        import faiss

        nlist = _nlist_for(4 * expected)
        keep = min(1.0, 16 * nlist / expected)  # k-means on ~16 points a list (a sample)
        rng = np.random.default_rng(self.options.seed)
        picks = [x[rng.random(len(x)) < keep] for x, _ in self._stored()] + [new[rng.random(len(new)) < keep]]
        sample = np.concatenate(picks)
        nlist = min(nlist, max(1, len(sample) // 4))
        kmeans = faiss.Kmeans(self.codec.out_dim, nlist, niter=10, spherical=True, seed=self.options.seed,
                              max_points_per_centroid=16, min_points_per_centroid=1)  # fmt: skip
        kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
        flat = self.index.index if not self.approximate else self.index
        ivf = self.codec.ivf_index(faiss.downcast_index(flat), kmeans.centroids)
        ivf.nprobe = self.options.nprobe
        old_list_of, old = self.list_of, self.index
        self.list_of = np.zeros_like(old_list_of)
        for x, ids in self._stored():
            _, assign = ivf.quantizer.search(x, 1)
            assign = np.ascontiguousarray(assign[:, 0])
            ivf.add_core(len(ids), faiss.swig_ptr(np.ascontiguousarray(x)), faiss.swig_ptr(np.ascontiguousarray(ids)),
                         faiss.swig_ptr(assign))  # fmt: skip
            self.list_of[self._rows_of(ids)] = assign
        del old, old_list_of
        self.index = ivf
        self.ivf_built_at = max(expected, 1)
        log.info("frame index clustered: %d vectors in %d IVF lists (nprobe %d)", self.ntotal, nlist, ivf.nprobe)

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows (exact store / list_of) of vector ids."""
        return self.table.cols["vstart"][ids >> SLOT_BITS] + (ids & (MAX_FRAMES - 1))

    # -- removal -------------------------------------------------------------------------------------
    def remove(self, video_id: str) -> None:
        """Tombstone a video: it leaves every result now, its hash too; its codes at compaction."""
        num = self.table.find(video_id)
        if num is not None and self.table.cols["alive"][num]:
            self.table.cols["alive"][num] = False
            self.table.set_hash(num, None)
            self.dirty = True

    def purge(self, video_ids: Iterable[str]) -> int:
        """Remove these videos and drop their vectors now (a takedown); returns how many were live."""
        nums = []
        for vid in video_ids:
            num = self.table.find(vid)
            if num is not None and self.table.cols["alive"][num]:
                self.remove(vid)
                nums.append(num)
        if nums:
            self._drop_vectors(np.array(nums, np.int64), zero_exact=True)
        return len(nums)

    def _drop_vectors(self, nums: np.ndarray, zero_exact: bool) -> None:
        import faiss

        nvec = self.table.cols["nvec"][nums].astype(np.int64)
        ids = np.concatenate([(n << SLOT_BITS) | np.arange(k, dtype=np.int64) for n, k in zip(nums, nvec)])
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        if zero_exact and self.exact is not None:
            for n, k in zip(nums, nvec):
                self.exact.zero(int(self.table.cols["vstart"][n]), int(k))
        self.table.cols["nvec"][nums] = 0
        self.dirty = True

    def compact(self, force: bool = False) -> None:
        """Drop dead videos' codes once a quarter of the stored vectors are dead (``force``: any)."""
        n = len(self.table)
        if not n or not self.ntotal:
            return
        nvec = self.table.col("nvec")
        dead = np.flatnonzero(~self.table.col("alive") & (nvec > 0))
        if len(dead) and (force or nvec[dead].sum() >= 0.25 * self.ntotal):
            self._drop_vectors(dead, zero_exact=False)

    # -- queries -------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Faiss search over the codes: (similarities, vector ids), both (Q, k); ids are -1 where
        none; ``id >> 8`` is the video number (dead videos included: ``best_per_video`` skips them)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if not self.ntotal:
            return np.zeros((len(queries), 1), np.float32), -np.ones((len(queries), 1), np.int64)
        return self.index.search(self.codec.project(queries), max(1, min(k, self.ntotal)))

    def best_per_video(self, queries: np.ndarray, k: int = 32) -> dict[int, np.ndarray]:
        """For each live video near the queries: (Q,) best similarity of each query frame (in
        code space: approximate once compressed; ``video_vectors`` gives the exact vectors)."""
        sims, ids = self.search(queries, k)
        return best_by_video(sims, ids, self.alive)

    def alive(self, nums: np.ndarray) -> np.ndarray:
        """Which of these video numbers are registered and live."""
        col = self.table.col("alive")
        nums = np.asarray(nums, np.int64)
        ok = (nums >= 0) & (nums < len(col))
        ok[ok] = col[nums[ok]]
        return ok

    def nearest_hash(self, phash: str | None, max_distance: int) -> tuple[int, int] | None:
        """(video number, Hamming distance) of the live video whose hash is nearest
        ``phash`` when within ``max_distance`` bits, else None (also for a missing hash)."""
        found = self._hash_distances(phash)
        if found is None:
            return None
        num = int(np.argmin(found))  # nearest; ties: the earliest registered
        distance = int(found[num])
        return (num, distance) if distance <= max_distance else None

    def hashes_within(self, phash: str | None, max_distance: int) -> list[tuple[int, int]]:
        """(video number, Hamming distance) of EVERY live video within ``max_distance`` bits of
        ``phash``, nearest first (``nearest_hash`` gives only the nearest)."""
        found = self._hash_distances(phash)
        if found is None or max_distance < 0:
            return []
        nums = np.flatnonzero(found <= max_distance)
        return sorted(((int(i), int(found[i])) for i in nums), key=lambda t: (t[1], t[0]))

    def _hash_distances(self, phash: str | None) -> np.ndarray | None:
        value = phash_value(phash)
        hashed = self.table.col("hashed")
        if value is None or not len(hashed) or not hashed.any():
            return None
        distances = _popcount(self.table.col("hashes") ^ np.uint64(value)).astype(np.int16)
        distances[~hashed] = 99
        return distances

    def video_vectors(self, video_id: str, exact: bool = True) -> np.ndarray:
        """The frame vectors stored for one live video, (N, dim) float32: exact (float16) from
        the disk store, or its codes decoded (in memory, no disk read) when ``exact`` is False or
        the index keeps no exact vectors; (0, dim) if unknown or removed. Inner products of two
        decoded videos are within ``code_margin`` of the exact ones: a cheap first look."""
        num = self.table.find(video_id)
        empty = np.zeros((0, self.dim), np.float32)
        if num is None or not self.table.cols["alive"][num]:
            return empty
        start, n = int(self.table.cols["vstart"][num]), int(self.table.cols["nvec"][num])
        if not n:
            return empty
        if exact and self.exact is not None:
            return self.exact.read(start, n)
        return self.codec.back(self._codes_of(num, n))

    def _codes_of(self, num: int, n: int) -> np.ndarray:
        """The projected vectors (decoded codes) of one video's ``n`` stored frames, in slot order."""
        import faiss

        want = (np.int64(num) << SLOT_BITS) | np.arange(n, dtype=np.int64)
        if not self.approximate:
            ids = _view(self.index.id_map.data(), self.index.id_map.size(), np.int64)
            pos = np.flatnonzero(np.isin(ids, want))
            pos = pos[np.argsort(ids[pos])]
            inner = faiss.downcast_index(self.index.index)
            return np.stack([inner.reconstruct(int(p)) for p in pos])
        il, size = self.index.invlists, self.index.code_size
        out = []
        for vid, row in zip(want, self._rows_of(want)):
            lst = int(self.list_of[row])
            ids = _view(il.get_ids(lst), il.list_size(lst), np.int64)
            at = int(np.flatnonzero(ids == vid)[0])
            out.append(_view(il.get_codes(lst), il.list_size(lst) * size, np.uint8)[at * size : (at + 1) * size].copy())
        return self._decode(np.stack(out))

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, target: str | Path, extras: dict[str, bytes] | None = None) -> None:
        """Snapshot to a folder or an fsspec URI (module docstring); ``extras``: more files
        (name -> bytes) of the same generation, written before the manifest (``load_extra``)."""
        import faiss

        from processing.vision import snapshot

        self.compact()
        place = snapshot.Place.of(target)
        previous = place.read_manifest()
        gen, number = snapshot.new_generation(previous or {"generation_number": self.generation})
        files = {"index": f"frames-{gen}.faiss", "arrays": f"arrays-{gen}.npz"}
        with tempfile.TemporaryDirectory(prefix="frame-save-") as tmp:
            faiss.write_index(self.index, str(Path(tmp) / files["index"]))
            arrays = self.table.arrays() | {"list_of": self.list_of[: self.rows]}
            if self.codec.projection is not None and self.codec.kind == "pca":
                arrays["projection"] = self.codec.projection
            np.savez(Path(tmp) / files["arrays"], **arrays)
            place.put_files({name: Path(tmp) / name for name in files.values()})
            files.update({f"extra:{k}": v for k, v in place.put_extras(extras or {}, gen).items()})
            exact = None
            if self.exact is not None:
                self._save_exact(place)
                exact = {"rows": self.exact.rows, "segments": self.exact.segments(), "dim": self.dim}
            manifest = {"format": self.FORMAT, "dim": self.dim, "approx_threshold": self.approx_threshold,
                        "generation": gen, "generation_number": number, "files": files,
                        "options": asdict(self.options), "codec": self.codec.state(), "videos": len(self.table),
                        "alive": len(self), "ntotal": self.ntotal, "rows": self.rows,
                        "ivf_built_at": self.ivf_built_at, "exact": exact}  # fmt: skip
            place.write_manifest(manifest)
        if previous and previous.get("files"):
            keep = set(files.values()) | set((previous.get("files") or {}).values())
            place.delete_generations(keep)
        self.generation = manifest["generation_number"]
        self.dirty = False

    def _save_exact(self, place) -> None:
        """Put the exact-vector segments where the snapshot goes (only what changed since the
        last upload there); a local folder becomes the store's working folder."""
        if place.local is not None:
            target = place.local
            if self.exact.folder.resolve() != target.resolve():
                target.mkdir(parents=True, exist_ok=True)
                for name in self.exact.segments():
                    shutil.copyfile(self.exact.folder / name, target / name)
                self.exact = ExactStore(target, self.dim, rows=self.exact.rows)
                self._scratch = None
            return
        changed = self._uploaded.get(place.uri)
        segs = self.exact.segments()
        todo = segs if changed is None else [self.exact.segment_name(s) for s in sorted(changed | self.exact.changed)
                                             if s < len(segs)]  # fmt: skip
        place.put_files({name: self.exact.folder / name for name in todo})
        for uri in self._uploaded:
            if uri != place.uri and self._uploaded[uri] is not None:
                self._uploaded[uri] |= self.exact.changed
        self._uploaded[place.uri] = set()
        self.exact.changed = set()

    @classmethod
    def load(cls, target: str | Path, dim: int, approx_threshold: int, options: IndexOptions | None = None,
             cache_dir: str | Path | None = None) -> FrameIndex:  # fmt: skip
        """The snapshot at ``target`` (a folder or an fsspec URI), or a new empty index.

        The saved codec wins over ``options`` (codes cannot change kind); ``nprobe`` and
        ``exact`` come from ``options`` when given. ``cache_dir``: where a URI's exact-vector
        segments are downloaded (a temporary folder by default). An index saved by the
        previous format (one ``frames.faiss`` of float vectors) is converted on load.
        """
        import faiss

        from processing.vision import snapshot

        place = snapshot.Place.of(target)
        meta = place.read_manifest()
        if meta is None:  # nothing saved yet: exact vectors go where they will be saved (or the cache)
            return cls(dim, approx_threshold, options, exact_dir=place.local or cache_dir)
        if meta["dim"] != dim:
            raise ValueError(f"index in {target} has dim {meta['dim']}, the model gives {dim}")
        if meta.get("format") != cls.FORMAT:
            return cls._load_legacy(place, meta, dim, approx_threshold, options)
        saved = IndexOptions(**meta["options"])
        opts = saved
        if options:
            opts = replace(saved, nprobe=options.nprobe, exact=options.exact and bool(meta.get("exact")))
        files = meta["files"]
        index = cls.__new__(cls)
        index.dim, index.approx_threshold, index.options = dim, approx_threshold, opts
        with tempfile.TemporaryDirectory(prefix="frame-load-") as tmp:
            got = place.get_files([files["index"], files["arrays"]], Path(tmp))
            index.index = faiss.read_index(str(got[files["index"]]))
            with np.load(got[files["arrays"]]) as arrays:
                index.table = VideoTable.from_arrays(arrays)
                index.list_of = arrays["list_of"].copy()
                projection = arrays["projection"] if "projection" in arrays else None
        index.codec = FrameCodec.from_state(meta["codec"], projection)
        index.rows, index.ivf_built_at = int(meta["rows"]), int(meta["ivf_built_at"])
        if index.approximate:
            index.index.nprobe = opts.nprobe
        index.exact, index._scratch, index._uploaded = None, None, {}
        index.generation, index.dirty = int(meta["generation_number"]), False
        if opts.exact:
            exact = meta["exact"]
            if place.local is not None:
                index.exact = ExactStore(place.local, dim, rows=int(exact["rows"]))
            else:
                index._bind_exact(Path(cache_dir) if cache_dir else None, rows=int(exact["rows"]))
                place.get_files(exact["segments"], index.exact.folder)
                index._uploaded[place.uri] = set()
        return index

    @classmethod
    def load_extra(cls, target: str | Path, name: str) -> bytes | None:
        """An ``extras`` file of the snapshot at ``target`` (None when there is none)."""
        from processing.vision import snapshot

        place = snapshot.Place.of(target)
        meta = place.read_manifest()
        stored = ((meta or {}).get("files") or {}).get(f"extra:{name}")
        return None if stored is None else place.read_bytes(stored)

    @classmethod
    def _load_legacy(cls, place, meta: dict, dim: int, approx_threshold: int,
                     options: IndexOptions | None) -> FrameIndex:  # fmt: skip
        """The previous format: ``frames.faiss`` (float vectors), ``owners.npy``, records in meta.json."""
        import faiss

        with tempfile.TemporaryDirectory(prefix="frame-legacy-") as tmp:
            got = place.get_files(["frames.faiss", "owners.npy"], Path(tmp))
            old = faiss.read_index(str(got["frames.faiss"]))
            owners = np.load(got["owners.npy"])
        vectors = old.reconstruct_n(0, old.ntotal) if old.ntotal else np.zeros((0, dim), np.float32)
        index = cls(dim, approx_threshold, options)
        records = []
        for num, record in enumerate(meta["videos"]):
            if record.get("alive"):
                records.append((record["video_id"], vectors[owners == num], record.get("quality") or 0.0,
                                record.get("duration") or 0.0, record.get("phash")))  # fmt: skip
        index.add_many(records)
        log.info("near-dup index at %s converted from the previous format: %d videos", place.uri, len(records))
        return index
