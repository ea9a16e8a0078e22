"""VideoTable: the near-dup index's per-video records as numpy columns (~80 bytes a video, not a dict each).

A video number ``num`` (0, 1, 2... in the order videos were added) indexes every column:
id, quality, duration, alive, perceptual hash, how many vectors it has stored and where they
start. ``table[num]`` gives the record as a dict (``video_id``, ``quality``, ``duration``,
``alive``, and ``phash`` while alive and hashed), ``table.by_id`` maps ids to numbers. Ids
that are 64 hex characters (sha256, the project's video ids) take 32 bytes; any other id is
kept in a small side dict. Lookups by id go through a sorted array of 64-bit keys plus a dict
of the latest additions, merged when it grows (no Python object per video).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Iterator

import numpy as np

COLUMNS = {  # name -> (dtype, shape of one row)
    "idbytes": (np.uint8, (32,)),
    "key": (np.uint64, ()),
    "quality": (np.float64, ()),
    "duration": (np.float32, ()),
    "alive": (np.bool_, ()),
    "hashes": (np.uint64, ()),
    "hashed": (np.bool_, ()),
    "nvec": (np.uint16, ()),  # vectors stored now (0 once they are dropped)
    "vstart": (np.int64, ()),  # where its vectors start in the index's per-vector arrays
}


def _hex32(video_id: str) -> bytes | None:
    if len(video_id) == 64:
        try:
            return bytes.fromhex(video_id)
        except ValueError:
            return None
    return None


def id_key(video_id: str) -> int:
    """The 64-bit key of an id: its first 8 bytes for a sha256 hex, else a blake2b of it."""
    raw = _hex32(video_id)
    if raw is None:
        raw = hashlib.blake2b(video_id.encode(), digest_size=8).digest()
    return int.from_bytes(raw[:8], "big")


class VideoTable:
    """Per-video columns, grown by a quarter at a time; see the module docstring."""

    def __init__(self, capacity: int = 64):
        self.n = 0
        self.cols = {name: np.zeros((capacity, *shape), dtype) for name, (dtype, shape) in COLUMNS.items()}
        self.other_ids: dict[int, str] = {}  # num -> id, for ids that are not 64 hex chars
        self._sorted_keys = np.zeros(0, np.uint64)
        self._sorted_nums = np.zeros(0, np.int64)
        self._recent: dict[int, list[int]] = {}  # key -> nums added since the last merge
        self.by_id = _ById(self)

    def __len__(self) -> int:
        return self.n

    def col(self, name: str) -> np.ndarray:
        """The live rows of one column (a view)."""
        return self.cols[name][: self.n]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.cols.values()) + self._sorted_keys.nbytes + self._sorted_nums.nbytes

    # -- writing --------------------------------------------------------------------------------
    def append(self, video_id: str, quality: float, duration: float, phash: int | None, vstart: int) -> int:
        num = self.n
        if num >= len(self.cols["key"]):
            grow = max(64, len(self.cols["key"]) // 4)  # 1.25x: at most a fifth of the rows unused
            self.cols = {k: np.concatenate([c, np.zeros((grow, *c.shape[1:]), c.dtype)]) for k, c in self.cols.items()}
        raw = _hex32(video_id)
        if raw is None or raw.hex() != video_id:  # not lowercase sha256 hex: kept as it is
            self.other_ids[num] = video_id
        else:
            self.cols["idbytes"][num] = np.frombuffer(raw, np.uint8)
        key = id_key(video_id)
        c = self.cols
        c["key"][num], c["quality"][num], c["duration"][num], c["alive"][num] = key, quality, duration, True
        c["hashes"][num], c["hashed"][num] = phash or 0, phash is not None
        c["nvec"][num], c["vstart"][num] = 0, vstart
        self.n += 1
        self._recent.setdefault(key, []).append(num)
        if len(self._recent) > max(4096, len(self._sorted_keys) // 8):
            self._merge()
        return num

    def _merge(self) -> None:
        keys = self.cols["key"][: self.n]
        order = np.argsort(keys, kind="stable")
        self._sorted_keys, self._sorted_nums = keys[order], order.astype(np.int64)
        self._recent = {}

    def set_hash(self, num: int, phash: int | None) -> None:
        self.cols["hashes"][num] = phash or 0
        self.cols["hashed"][num] = phash is not None

    # -- reading --------------------------------------------------------------------------------
    def video_id(self, num: int) -> str:
        other = self.other_ids.get(num)
        return other if other is not None else self.cols["idbytes"][num].tobytes().hex()

    def find(self, video_id: str) -> int | None:
        """The newest number of this id (a re-added id gets a new number), or None."""
        key = id_key(video_id)
        found = [n for n in self._recent.get(key, ()) if self.video_id(n) == video_id]
        if found:
            return found[-1]
        lo, hi = np.searchsorted(self._sorted_keys, np.uint64(key), "left"), np.searchsorted(
            self._sorted_keys, np.uint64(key), "right")  # fmt: skip
        found = [int(n) for n in self._sorted_nums[lo:hi] if self.video_id(int(n)) == video_id]
        return max(found) if found else None

    def __getitem__(self, num: int) -> dict:
        if not -self.n <= num < self.n:
            raise IndexError(num)
        num = num % self.n
        c = self.cols
        record = {"video_id": self.video_id(num), "quality": float(c["quality"][num]),
                  "duration": float(c["duration"][num]), "alive": bool(c["alive"][num])}  # fmt: skip
        if record["alive"] and c["hashed"][num]:
            record["phash"] = f"{int(c['hashes'][num]):016x}"
        return record

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(self.n))

    # -- persistence ----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        out = {f"video_{k}": c[: self.n] for k, c in self.cols.items()}
        out["video_other_nums"] = np.array(sorted(self.other_ids), np.int64)
        out["video_other_ids"] = np.array([self.other_ids[n] for n in sorted(self.other_ids)], dtype=str)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> VideoTable:
        n = len(arrays["video_key"])
        table = cls(capacity=max(64, n))
        for name in COLUMNS:
            table.cols[name][:n] = arrays[f"video_{name}"]
        table.n = n
        table.other_ids = {int(k): str(v) for k, v in zip(arrays["video_other_nums"], arrays["video_other_ids"])}
        table._merge()
        return table


class _ById(Mapping):
    """``video_id -> num`` over a VideoTable (the newest number of an id)."""

    def __init__(self, table: VideoTable):
        self._table = table

    def __getitem__(self, video_id: str) -> int:
        num = self._table.find(video_id) if isinstance(video_id, str) else None
        if num is None:
            raise KeyError(video_id)
        return num

    def __contains__(self, video_id) -> bool:
        return isinstance(video_id, str) and self._table.find(video_id) is not None

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for num in range(self._table.n - 1, -1, -1):
            vid = self._table.video_id(num)
            if vid not in seen:
                seen.add(vid)
                yield vid

    def __len__(self) -> int:
        return sum(1 for _ in self)
