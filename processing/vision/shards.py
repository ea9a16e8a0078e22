"""ShardedIndex: several FrameIndex shards used as one (adds routed by video id, queries fanned out, results merged).

A video lives in shard ``shard_of(video_id, n)`` (a stable hash: the same in every process).
Its global number is ``local * n + shard`` and a vector's global id is ``global << 8 | slot``,
so what ``FrameIndex`` returns keeps its meaning: ``videos[num]``, ``by_id``, ``search``,
``best_per_video``, ``hashes_within``, ``nearest_hash``, ``video_vectors``, ``save``/``load``.
The merge steps are plain functions (``merge_search``, ``merge_best``, ``merge_hashes``) and so
is the snapshot's manifest (``write_manifest``, ``check_shards``), so a caller whose shards are
remote (Ray actors: processing/runtime/index.py) fans out itself, merges and saves the same way.
Pure Python: nothing here knows about Ray.

Every query goes to every shard: shards split memory, not lookup work (docs/capacity.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from processing.vision.frame_index import SLOT_BITS, FrameIndex, IndexOptions, best_by_video

SHARDS_MANIFEST = "shards.json"


def shard_of(video_id: str, n: int) -> int:
    """The shard of a video id among ``n`` (blake2b of the id, stable across processes)."""
    return int.from_bytes(hashlib.blake2b(video_id.encode(), digest_size=8).digest(), "big") % n


def global_num(local: int, shard: int, n: int) -> int:
    return local * n + shard


def local_num(num: int, n: int) -> tuple[int, int]:
    """(shard, local number) of a global video number."""
    return num % n, num // n


def global_ids(ids: np.ndarray, shard: int, n: int) -> np.ndarray:
    """A shard's vector ids (local << 8 | slot) as global ids (-1 stays -1)."""
    ids = np.asarray(ids, np.int64)
    out = (((ids >> SLOT_BITS) * n + shard) << SLOT_BITS) | (ids & ((1 << SLOT_BITS) - 1))
    return np.where(ids >= 0, out, -1)


def merge_search(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of per-shard ``(sims, global ids)`` results, most similar first."""
    sims = np.concatenate([np.where(i >= 0, s, -np.inf) for s, i in parts], axis=1)
    ids = np.concatenate([i for _, i in parts], axis=1)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    top_s, top_i = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
    return np.where(np.isfinite(top_s), top_s, 0.0).astype(np.float32), np.where(np.isfinite(top_s), top_i, -1)


def merge_best(parts: Iterable[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    """Per-shard ``best_per_video`` results (global numbers: disjoint) as one: each shard's own
    top k, so a superset of what one index gives (``ShardedIndex.best_per_video`` merges the
    searches first and gives the same)."""
    out: dict[int, np.ndarray] = {}
    for part in parts:
        out.update(part)
    return out


def merge_hashes(parts: Iterable[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Per-shard ``hashes_within`` results (global numbers) as one list, nearest first."""
    return sorted((hit for part in parts for hit in part), key=lambda t: (t[1], t[0]))


def saved_shards(target: str | Path) -> int | None:
    """How many shards the sharded snapshot at ``target`` has (None: none saved there)."""
    from processing.vision.snapshot import Place

    saved = Place.of(target).read_manifest(SHARDS_MANIFEST)
    return None if saved is None else int(saved["shards"])


def check_shards(target: str | Path, n: int) -> None:
    """Raise ValueError when the snapshot at ``target`` was saved with another shard count."""
    saved = saved_shards(target)
    if saved is not None and saved != n:
        raise ValueError(f"the index at {target} has {saved} shards, not {n} "
                         "(resharding is not supported: keep the shard count)")  # fmt: skip


def write_manifest(target: str | Path, n: int, generations: list[int], extras: dict[str, bytes] | None) -> None:
    """After every shard is saved under ``target``: ``extras`` (name -> bytes, a new generation)
    and ``shards.json``, the manifest, last; then the extras of older generations go."""
    from processing.vision import snapshot

    place = snapshot.Place.of(target)
    previous = place.read_manifest(SHARDS_MANIFEST) or {}
    gen, number = snapshot.new_generation(previous)
    files = place.put_extras(extras or {}, gen)
    place.write_manifest({"shards": n, "generation_number": number, "files": files,
                          "generations": list(generations)}, SHARDS_MANIFEST)  # fmt: skip
    place.delete_generations(set(files.values()) | set((previous.get("files") or {}).values()))


class ShardedIndex:
    """``FrameIndex``'s API over ``shards`` (module docstring)."""

    def __init__(self, shards: Sequence[FrameIndex]):
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        self.shards = list(shards)
        self.n = len(self.shards)
        self.dim = self.shards[0].dim
        self.videos = _Videos(self)
        self.by_id = _ById(self)
        self._saved_to: str | None = None  # where the shards were last saved (or loaded from)

    @classmethod
    def empty(cls, n: int, dim: int, approx_threshold: int, options: IndexOptions | None = None) -> ShardedIndex:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"shards must be a positive integer, got {n!r}")
        return cls([FrameIndex(dim, approx_threshold, options) for _ in range(n)])

    # -- sizes ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    @property
    def dirty(self) -> bool:
        return any(s.dirty for s in self.shards)

    def memory_bytes(self) -> int:
        return sum(s.memory_bytes() for s in self.shards)

    # -- writes --------------------------------------------------------------------------------------
    def add(self, video_id: str, vectors: np.ndarray, quality: float = 0.0, duration: float = 0.0,
            phash: str | None = None) -> int:  # fmt: skip
        s = shard_of(video_id, self.n)
        return global_num(self.shards[s].add(video_id, vectors, quality, duration, phash), s, self.n)

    def add_many(self, records: Iterable[tuple]) -> list[int]:
        records = list(records)
        by_shard: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            by_shard.setdefault(shard_of(record[0], self.n), []).append(i)
        out = [0] * len(records)
        for s, rows in by_shard.items():
            for i, local in zip(rows, self.shards[s].add_many(records[i] for i in rows)):
                out[i] = global_num(local, s, self.n)
        return out

    def remove(self, video_id: str) -> None:
        self.shards[shard_of(video_id, self.n)].remove(video_id)

    def purge(self, video_ids: Iterable[str]) -> int:
        by_shard: dict[int, list[str]] = {}
        for vid in video_ids:
            by_shard.setdefault(shard_of(vid, self.n), []).append(vid)
        return sum(self.shards[s].purge(ids) for s, ids in by_shard.items())

    def compact(self, force: bool = False) -> None:
        for s in self.shards:
            s.compact(force)

    # -- queries -------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for s, shard in enumerate(self.shards):
            sims, ids = shard.search(queries, k)
            parts.append((sims, global_ids(ids, s, self.n)))
        return merge_search(parts, k)

    def best_per_video(self, queries: np.ndarray, k: int = 32) -> dict[int, np.ndarray]:
        """As FrameIndex's, over the merged top ``k`` (so the same videos as one index would give)."""
        sims, ids = self.search(queries, k)
        return best_by_video(sims, ids, self.alive)

    def alive(self, nums: np.ndarray) -> np.ndarray:
        nums = np.asarray(nums, np.int64)
        out = np.zeros(len(nums), bool)
        for s, shard in enumerate(self.shards):
            mine = nums % self.n == s
            out[mine] = shard.alive(nums[mine] // self.n)
        return out

    def hashes_within(self, phash: str | None, max_distance: int) -> list[tuple[int, int]]:
        return merge_hashes([(global_num(num, s, self.n), d) for num, d in shard.hashes_within(phash, max_distance)]
                            for s, shard in enumerate(self.shards))  # fmt: skip

    def nearest_hash(self, phash: str | None, max_distance: int) -> tuple[int, int] | None:
        hits = [(global_num(h[0], s, self.n), h[1]) for s, shard in enumerate(self.shards)
                if (h := shard.nearest_hash(phash, max_distance)) is not None]  # fmt: skip
        return min(hits, key=lambda t: (t[1], t[0])) if hits else None

    def video_vectors(self, video_id: str, exact: bool = True) -> np.ndarray:
        return self.shards[shard_of(video_id, self.n)].video_vectors(video_id, exact)

    @property
    def code_margin(self) -> float:
        return max(s.code_margin for s in self.shards)

    # -- persistence ---------------------------------------------------------------------------------
    @staticmethod
    def shard_target(target: str | Path, s: int, n: int) -> str | Path:
        name = f"shard-{s:03d}-of-{n:03d}"
        if isinstance(target, Path) or "://" not in str(target):
            return Path(target) / name
        return f"{str(target).rstrip('/')}/{name}"

    def save(self, target: str | Path, extras: dict[str, bytes] | None = None) -> None:
        """Every shard to ``<target>/shard-SSS-of-NNN`` (each its own snapshot), then ``extras``
        (name -> bytes, as FrameIndex.save) and ``shards.json``, the manifest, last."""
        for s, shard in enumerate(self.shards):
            if shard.dirty or str(target) != self._saved_to:  # a clean shard is already there
                shard.save(self.shard_target(target, s, self.n))
        self._saved_to = str(target)
        write_manifest(target, self.n, [s.generation for s in self.shards], extras)

    @classmethod
    def load_extra(cls, target: str | Path, name: str) -> bytes | None:
        """An ``extras`` file of the sharded snapshot at ``target`` (None when there is none)."""
        from processing.vision.snapshot import Place

        place = Place.of(target)
        stored = ((place.read_manifest(SHARDS_MANIFEST) or {}).get("files") or {}).get(name)
        return None if stored is None else place.read_bytes(stored)

    @classmethod
    def load(cls, target: str | Path, n: int, dim: int, approx_threshold: int,
             options: IndexOptions | None = None) -> ShardedIndex:  # fmt: skip
        """The ``n`` shards saved at ``target`` (new empty ones where none was saved)."""
        check_shards(target, n)
        saved = saved_shards(target)
        index = cls([FrameIndex.load(cls.shard_target(target, s, n), dim, approx_threshold, options) for s in range(n)])
        index._saved_to = str(target) if saved is not None else None
        return index


class _Videos(Sequence):
    """``videos[global num]`` over the shards."""

    def __init__(self, index: ShardedIndex):
        self._index = index

    def __getitem__(self, num: int) -> dict:
        s, local = local_num(num, self._index.n)
        return self._index.shards[s].videos[local]

    def __len__(self) -> int:
        return sum(len(s.videos) for s in self._index.shards)

    def __iter__(self) -> Iterator[dict]:
        for shard in self._index.shards:
            yield from shard.videos


class _ById(Mapping):
    """``video_id -> global num`` over the shards."""

    def __init__(self, index: ShardedIndex):
        self._index = index

    def __getitem__(self, video_id: str) -> int:
        s = shard_of(video_id, self._index.n)
        return global_num(self._index.shards[s].by_id[video_id], s, self._index.n)

    def __contains__(self, video_id) -> bool:
        return isinstance(video_id, str) and video_id in self._index.shards[shard_of(video_id, self._index.n)].by_id

    def __iter__(self) -> Iterator[str]:
        for shard in self._index.shards:
            yield from shard.by_id

    def __len__(self) -> int:
        return sum(len(s.by_id) for s in self._index.shards)
