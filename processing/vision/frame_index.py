"""FrameIndex: frame vectors and perceptual hashes of kept videos (faiss), the near-dup stage's memory.

Exact search (``IndexFlatIP``) while small, HNSW past ``approx_threshold`` vectors; the hashes
sit in a uint64 array so a lookup is one vectorised XOR + popcount over every kept video.
Saved to and loaded from a folder (one per embedding model: models are never mixed).

Takedowns (``python -m processing forget``): the index folder holds ``forgotten.txt``, one
forgotten video id a line; ``purge`` drops a video's vectors and hash at once (not only a
tombstone). Whoever saves or edits the indexes holds ``locked(index_dir)``, so the near-dup
actor and ``forget`` never write the files at the same time.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

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


class FrameIndex:
    """Frame vectors and perceptual hashes of kept videos; exact (IndexFlatIP) while small, HNSW past a size.

    Rows are positional; ``owners[row]`` is a video number; ``videos[num]`` holds the
    video's id, quality and phash; removed videos are tombstoned (skipped in results) and
    dropped from the index when it is compacted (on save, once a quarter of the rows are dead).
    The hashes live in a uint64 array by video number (``_hashes``, ``_hashed`` marks the live
    ones), so one lookup is a vectorised XOR + popcount over every kept video.
    """

    FILE = "frames.faiss"
    META = "meta.json"
    OWNERS = "owners.npy"

    # efSearch 48: on 100k clustered 512-d vectors (2 cores) it gave 4,600 lookups/s at recall@10
    # 0.9999, against 1,570/s at 128; bench/index.py measures it at 1M (docs/benchmarks.md).
    def __init__(self, dim: int, approx_threshold: int, hnsw_m: int = 32, ef_search: int = 48):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(approx_threshold, int) or approx_threshold < 1:
            raise ValueError(f"approx_threshold must be a positive integer, got {approx_threshold!r}")
        self.dim = dim
        self.approx_threshold = approx_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.index = self._flat()
        self.owners = np.zeros(0, dtype=np.int64)
        self.videos: list[dict] = []  # num -> {"video_id", "quality", "duration", "alive"}
        self.by_id: dict[str, int] = {}
        self._hashes = np.zeros(64, dtype=np.uint64)  # by video number (capacity doubles)
        self._hashed = np.zeros(64, dtype=bool)  # live video with a hash
        self.dirty = False

    # -- building ------------------------------------------------------------------------
    def _flat(self):
        import faiss

        return faiss.IndexFlatIP(self.dim)

    def _hnsw(self):
        import faiss

        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = self.ef_search
        return index

    @property
    def approximate(self) -> bool:
        import faiss

        return isinstance(self.index, faiss.IndexHNSWFlat)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def __len__(self) -> int:
        return sum(1 for v in self.videos if v["alive"])

    def add(
        self, video_id: str, vectors: np.ndarray, quality: float = 0.0, duration: float = 0.0, phash: str | None = None
    ) -> int:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if video_id in self.by_id and self.videos[self.by_id[video_id]]["alive"]:
            return self.by_id[video_id]  # idempotent: redelivered video
        num = len(self.videos)
        record = {"video_id": video_id, "quality": quality, "duration": duration, "alive": True}
        if phash_value(phash) is not None:
            record["phash"] = phash
        self.videos.append(record)
        self.by_id[video_id] = num
        self._set_hash(num, record.get("phash"))
        self.add_vectors(vectors, np.full(len(vectors), num, dtype=np.int64))
        return num

    def _set_hash(self, num: int, phash: str | None) -> None:
        if num >= len(self._hashes):
            grow = max(64, 2 * len(self._hashes), num + 1)
            self._hashes = np.concatenate([self._hashes, np.zeros(grow - len(self._hashes), np.uint64)])
            self._hashed = np.concatenate([self._hashed, np.zeros(grow - len(self._hashed), bool)])
        value = phash_value(phash)
        self._hashes[num] = value or 0
        self._hashed[num] = value is not None

    def add_vectors(self, vectors: np.ndarray, owners: np.ndarray) -> None:
        """Raw add (benchmarks add millions of vectors without video records)."""
        if not self.approximate and self.ntotal + len(vectors) > self.approx_threshold:
            self._rebuild(approximate=True)
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.owners = np.concatenate([self.owners, owners.astype(np.int64)])
        self.dirty = True

    def remove(self, video_id: str) -> None:
        num = self.by_id.get(video_id)
        if num is not None and self.videos[num]["alive"]:
            self.videos[num]["alive"] = False
            self.videos[num].pop("phash", None)  # a demoted video's hash leaves the index too
            self._set_hash(num, None)
            self.dirty = True

    def purge(self, video_ids: Iterable[str]) -> int:
        """Remove these videos and drop their vectors now (a takedown); returns how many were live."""
        n = 0
        for vid in video_ids:
            num = self.by_id.get(vid)
            if num is not None and self.videos[num]["alive"]:
                self.remove(vid)
                n += 1
        if n:
            self.compact(force=True)
        return n

    def _rebuild(self, approximate: bool, keep: np.ndarray | None = None) -> None:
        """New index from the stored vectors (all rows, or the ``keep`` mask)."""
        vectors = self.index.reconstruct_n(0, self.ntotal) if self.ntotal else np.zeros((0, self.dim), np.float32)
        owners = self.owners
        if keep is not None:
            vectors, owners = vectors[keep], owners[keep]
        self.index = self._hnsw() if approximate else self._flat()
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors))
        self.owners = owners
        log.info("frame index rebuilt: %d vectors, %s", self.ntotal, type(self.index).__name__)

    def compact(self, force: bool = False) -> None:
        """Drop dead videos' vectors once a quarter of the rows are dead (``force``: any)."""
        if not self.videos or not self.ntotal:
            return
        alive = np.array([v["alive"] for v in self.videos], dtype=bool)
        keep = alive[self.owners] if len(self.owners) else np.zeros(0, bool)
        if keep.size and (~keep).any() and (force or (~keep).mean() >= 0.25):
            self._rebuild(approximate=int(keep.sum()) > self.approx_threshold, keep=keep)

    # -- queries -------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Raw faiss search: (similarities, rows), both (Q, k); rows are -1 where none."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if not self.ntotal:
            return np.zeros((len(queries), 1), np.float32), -np.ones((len(queries), 1), np.int64)
        return self.index.search(queries, k)

    def nearest_hash(self, phash: str | None, max_distance: int) -> tuple[int, int] | None:
        """(video number, Hamming distance) of the live kept video whose hash is nearest
        ``phash`` when within ``max_distance`` bits, else None (also for a missing hash)."""
        value = phash_value(phash)
        n = len(self.videos)
        if value is None or n == 0 or not self._hashed[:n].any():
            return None
        distances = _popcount(self._hashes[:n] ^ np.uint64(value)).astype(np.int16)
        distances[~self._hashed[:n]] = 99
        num = int(np.argmin(distances))  # nearest; ties: the earliest kept
        distance = int(distances[num])
        return (num, distance) if distance <= max_distance else None

    def best_per_video(self, queries: np.ndarray, k: int = 32) -> dict[int, np.ndarray]:
        """For each live kept video near the queries: (Q,) best similarity of each query frame."""
        sims, rows = self.search(queries, k)
        out: dict[int, np.ndarray] = {}
        for q in range(len(queries)):
            for sim, row in zip(sims[q], rows[q]):
                if row < 0:
                    continue
                num = int(self.owners[row])
                if num >= len(self.videos) or not self.videos[num]["alive"]:
                    continue
                best = out.setdefault(num, np.full(len(queries), -1.0, np.float32))
                if sim > best[q]:
                    best[q] = sim
        return out

    def hashes_within(self, phash: str | None, max_distance: int) -> list[tuple[int, int]]:
        """(video number, Hamming distance) of EVERY live video within ``max_distance`` bits of
        ``phash``, nearest first (``nearest_hash`` gives only the nearest)."""
        value = phash_value(phash)
        n = len(self.videos)
        if value is None or n == 0 or max_distance < 0 or not self._hashed[:n].any():
            return []
        distances = _popcount(self._hashes[:n] ^ np.uint64(value)).astype(np.int16)
        distances[~self._hashed[:n]] = 99
        nums = np.flatnonzero(distances <= max_distance)
        return sorted(((int(i), int(distances[i])) for i in nums), key=lambda t: (t[1], t[0]))

    def video_vectors(self, video_id: str) -> np.ndarray:
        """The frame vectors stored for one live video, (N, dim) float32 (as the index keeps them:
        lossy when the index compresses its vectors); (0, dim) for an unknown or removed video."""
        num = self.by_id.get(video_id)
        if num is None or not self.videos[num]["alive"]:
            return np.zeros((0, self.dim), np.float32)
        rows = np.flatnonzero(self.owners == num)
        if not len(rows):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.index.reconstruct(int(r)) for r in rows]).astype(np.float32)

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        self.compact()
        tmp = folder / (self.FILE + ".tmp")
        faiss.write_index(self.index, str(tmp))
        np.save(folder / (self.OWNERS + ".tmp.npy"), self.owners)
        meta = {"dim": self.dim, "approx_threshold": self.approx_threshold, "videos": self.videos}
        (folder / (self.META + ".tmp")).write_text(json.dumps(meta))
        os.replace(tmp, folder / self.FILE)
        os.replace(folder / (self.OWNERS + ".tmp.npy"), folder / self.OWNERS)
        os.replace(folder / (self.META + ".tmp"), folder / self.META)
        self.dirty = False

    @classmethod
    def load(cls, folder: Path, dim: int, approx_threshold: int) -> FrameIndex:
        """The saved index of ``folder``, or a new empty one."""
        import faiss

        index = cls(dim, approx_threshold)
        if not (folder / cls.FILE).exists():
            return index
        meta = json.loads((folder / cls.META).read_text())
        if meta["dim"] != dim:
            raise ValueError(f"index in {folder} has dim {meta['dim']}, the model gives {dim}")
        index.index = faiss.read_index(str(folder / cls.FILE))
        if index.approximate:
            index.index.hnsw.efSearch = index.ef_search
        index.owners = np.load(folder / cls.OWNERS)
        index.videos = meta["videos"]
        index.by_id = {v["video_id"]: n for n, v in enumerate(index.videos)}
        for num in range(len(index.videos) - 1, -1, -1):  # highest first: one allocation
            record = index.videos[num]
            index._set_hash(num, record.get("phash") if record["alive"] else None)
        return index
