"""ExactStore: every stored frame vector in full (float16) on local disk, so near-dup decisions stay exact.

The index keeps only small codes in memory (processing/vision/codecs.py); what decides a
match is the pair's frame similarities, computed from these rows (``FrameIndex.video_vectors``).
Rows are appended in fixed-size segment files (``exact-000000.f16``, ``SEGMENT_ROWS`` rows of
``dim`` float16 each) and read through a read-only map of each segment (the page cache holds what is hot). A takedown zeroes its rows
in place. The files only grow or get zeros, so a snapshot taken earlier stays readable (its row
count says where it ends) and a segment already uploaded is uploaded again only when changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEGMENT_ROWS = 1 << 16


class ExactStore:
    """float16 rows in segment files under ``folder`` (a local directory)."""

    PATTERN = "exact-{:06d}.f16"

    def __init__(self, folder: Path, dim: int, rows: int = 0, segment_rows: int = SEGMENT_ROWS):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim, self.rows, self.segment_rows = dim, rows, segment_rows
        self.row_bytes = 2 * dim
        self.changed: set[int] = set()  # segments written since the last upload
        self._maps: dict[int, np.ndarray] = {}  # segment -> read-only map (writes show through it)

    def segment_name(self, seg: int) -> str:
        return self.PATTERN.format(seg)

    def segments(self) -> list[str]:
        """Names of the segment files that hold rows [0, rows)."""
        return [self.segment_name(s) for s in range((self.rows + self.segment_rows - 1) // self.segment_rows)]

    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    def _spans(self, start: int, n: int):
        """(segment, row in segment, rows, offset in the caller's block) covering [start, start+n)."""
        done = 0
        while done < n:
            seg, off = divmod(start + done, self.segment_rows)
            take = min(n - done, self.segment_rows - off)
            yield seg, off, take, done
            done += take

    def append(self, vectors: np.ndarray) -> int:
        """Write rows at the end; returns the first row's number."""
        block = np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1, self.dim)
        start = self.rows
        for seg, off, take, done in self._spans(start, len(block)):
            path = self.folder / self.segment_name(seg)
            with open(path, "r+b" if path.exists() else "w+b") as fh:
                fh.seek(off * self.row_bytes)
                fh.write(block[done : done + take].tobytes())
            self.changed.add(seg)
        self.rows += len(block)
        return start

    def read(self, start: int, n: int) -> np.ndarray:
        """Rows [start, start+n) as float32 (n, dim), through a cached read-only map per segment."""
        out = np.empty((n, self.dim), np.float32)
        for seg, off, take, done in self._spans(start, n):
            out[done : done + take] = self._map(seg, off + take)[off : off + take]
        return out

    def _map(self, seg: int, rows: int) -> np.ndarray:
        """The segment as a (rows, dim) float16 map, mapped again when it has grown past the old map."""
        cached = self._maps.get(seg)
        if cached is None or len(cached) < rows:
            path = self.folder / self.segment_name(seg)
            have = path.stat().st_size // self.row_bytes
            cached = np.memmap(path, dtype=np.float16, mode="r", shape=(have, self.dim))
            self._maps[seg] = cached
        return cached

    def zero(self, start: int, n: int) -> None:
        """Overwrite rows with zeros (a takedown: the vectors are gone, not only hidden)."""
        for seg, off, take, _ in self._spans(start, n):
            with open(self.folder / self.segment_name(seg), "r+b") as fh:
                fh.seek(off * self.row_bytes)
                fh.write(bytes(take * self.row_bytes))
            self.changed.add(seg)
