"""NearDupStage: near-duplicate detection against every kept video (perceptual hash, then frames).

How a match is decided, in two layers. First the perceptual hash (``item.phash``, 64 bits,
computed by the crawl): a new video within ``phash_max_distance`` bits
(``settings.PHASH_MAX_DISTANCE``) of a kept video's hash is its duplicate, with
``similarity = 1 - distance / 64``, once the frames confirm it at a lower bar
(``phash_confirm``, see ``find_phash``); this catches heavy re-encodes whose frame
embeddings drift below ``frame_threshold``. Items without a hash skip this layer. When it finds nothing, the frames
decide: every frame of a new video looks up its nearest kept frames; each
kept video gets a vote from a new frame when one of its frames is at least
``frame_threshold`` similar (cosine). A kept video that collects votes from at least
``min_match`` of the new video's frames is the original; ``similarity`` is the median of
the new frames' best similarities to it. So re-encodes, resizes, crops, logos, pads, trims,
frame-rate changes and a 20 s cut out of a longer kept video all match frame by frame,
while a mean vector would blur them. Letterbox bars are trimmed upstream (EmbedStage; its
``dedup_features="gray"`` also drops colour from these embeddings, at twice the model work).
``counts`` says which layer matched (``match_phash`` / ``match_embedding``). The hashes
live in each model's index, so a new embedding model starts a new hash set too.

The better copy (resolution x bitrate, at a comparable duration) stays canonical, whichever
layer matched: if a new video beats the kept one, the kept one becomes the new one's
duplicate (``work.updates``) and its frames and hash leave the index (tombstones).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from processing.stages.base import Resources, Stage, Work

log = logging.getLogger(__name__)


def phash_value(value) -> int | None:
    """The 64-bit integer of a 16-hex-char perceptual hash, or None (missing or malformed)."""
    if not isinstance(value, str) or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


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
    def __init__(self, dim: int, approx_threshold: int = 200_000, hnsw_m: int = 32, ef_search: int = 48):
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

    def compact(self) -> None:
        if not self.videos or not self.ntotal:
            return
        alive = np.array([v["alive"] for v in self.videos], dtype=bool)
        keep = alive[self.owners] if len(self.owners) else np.zeros(0, bool)
        if keep.size and (~keep).mean() >= 0.25:
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
    def load(cls, folder: Path, dim: int, approx_threshold: int = 200_000) -> FrameIndex:
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


@dataclass
class Match:
    video_id: str
    # embedding layer: median of the new frames' best similarities to the kept video;
    # phash layer: 1 - Hamming distance / 64
    similarity: float
    votes: float  # fraction of the new video's frames that match it (1.0 for a phash match)
    layer: str = "embedding"  # "phash" or "embedding"


def quality(item, frames: np.ndarray | None = None) -> float:
    """Resolution x bitrate of the picture: the better copy is kept.

    Bitrate is bits/s (from the file size when the probe gave none). With the sampled
    frames at hand, padding bars do not count as resolution and a grayscale copy counts half.
    """
    pixels = float((item.width or 0) * (item.height or 0))
    rate = item.bit_rate or item.video_bit_rate
    if not rate and item.size_bytes and item.duration:
        rate = 8 * item.size_bytes / max(item.duration, 1e-3)
    if frames is not None and frames.ndim == 4 and len(frames):
        from processing.stages.embed import trim_borders

        trimmed = trim_borders(frames)
        pixels *= (trimmed.shape[1] * trimmed.shape[2]) / (frames.shape[1] * frames.shape[2])
        sample = frames[:, ::8, ::8].astype(np.int16)
        if np.abs(sample[..., 0] - sample[..., 1]).max() <= 3 and np.abs(sample[..., 1] - sample[..., 2]).max() <= 3:
            pixels *= 0.5
    return pixels * float(rate or 1)


class NearDupStage(Stage):
    """Mark videos whose frames mostly match one kept video as ``duplicate``; index the rest."""

    name = "neardup"
    resources = Resources(num_cpus=1)

    def __init__(
        self,
        *,
        index_dir: str | Path,
        frame_threshold: float = 0.80,
        min_match: float = 0.5,
        k: int = 32,
        approx_threshold: int = 200_000,
        flush_seconds: float = 5.0,
        prefer_better: bool = True,
        min_duration_ratio: float = 0.9,
        phash_max_distance: int | None = None,
        phash_confirm: float = 0.5,
    ):
        if not 0.0 < frame_threshold <= 1.0:
            raise ValueError(f"frame_threshold must be in (0, 1], got {frame_threshold!r}")
        if not 0.0 < min_match <= 1.0:
            raise ValueError(f"min_match must be in (0, 1], got {min_match!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if flush_seconds < 0:
            raise ValueError(f"flush_seconds must be >= 0, got {flush_seconds!r}")
        if phash_max_distance is None:
            import settings

            phash_max_distance = settings.PHASH_MAX_DISTANCE
        if not isinstance(phash_max_distance, int) or not -1 <= phash_max_distance <= 64:
            raise ValueError(f"phash_max_distance must be an integer in [-1, 64] (-1: off), got {phash_max_distance!r}")
        if not 0.0 <= phash_confirm <= 1.0:
            raise ValueError(f"phash_confirm must be in [0, 1], got {phash_confirm!r}")
        self.phash_max_distance = phash_max_distance
        self.phash_confirm = float(phash_confirm)
        self.index_dir = Path(index_dir)
        self.frame_threshold = float(frame_threshold)
        self.min_match = float(min_match)
        self.k = k
        self.approx_threshold = approx_threshold
        self.flush_seconds = float(flush_seconds)
        self.prefer_better = prefer_better
        self.min_duration_ratio = float(min_duration_ratio)
        self.indexes: dict[str, FrameIndex] = {}  # one per embedding model, never mixed
        self._last_flush = time.monotonic()
        self.counts: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg) -> NearDupStage:
        return cls(
            index_dir=cfg.index_dir,
            frame_threshold=cfg.neardup_threshold,
            min_match=getattr(cfg, "neardup_min_match", 0.5),
            approx_threshold=getattr(cfg, "neardup_approx_threshold", 200_000),
            phash_max_distance=getattr(cfg, "phash_max_distance", None),
        )

    def setup(self) -> None:
        self.index_dir.mkdir(parents=True, exist_ok=True)

    def folder(self, model: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in model)[:120]
        return self.index_dir / safe

    def index_for(self, model: str, dim: int) -> FrameIndex:
        """The index of one embedding model, loaded from disk the first time it is needed."""
        if model not in self.indexes:
            self.indexes[model] = FrameIndex.load(self.folder(model), dim, self.approx_threshold)
        return self.indexes[model]

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def find_phash(self, index: FrameIndex, phash: str | None, per_video: dict[int, np.ndarray]) -> Match | None:
        """The kept video whose perceptual hash is within ``phash_max_distance`` bits, or None.

        The hash proposes, the frames confirm: the candidate's frames must also be among the
        new video's nearest, with a median best similarity of at least ``phash_confirm``
        (copies the embedding misses score 0.66-0.88 there, different clips at most 0.41).
        Without that, random 64-bit hashes within 10 bits (~1e-8 per pair) would wrongly
        match about 1% of new videos once a million are kept.
        """
        if self.phash_max_distance < 0:
            return None
        hit = index.nearest_hash(phash, self.phash_max_distance)
        if hit is None:
            return None
        num, distance = hit
        sims = per_video.get(num)
        if sims is None or float(np.median(sims)) < self.phash_confirm:
            self._count("phash_unconfirmed")
            return None
        return Match(index.videos[num]["video_id"], 1.0 - distance / 64.0, 1.0, "phash")

    def find(self, per_video: dict[int, np.ndarray], index: FrameIndex) -> Match | None:
        """The kept video most of these frames match, or None."""
        best: Match | None = None
        for num, sims in per_video.items():
            votes = float((sims >= self.frame_threshold).mean())
            if votes < self.min_match:
                continue
            match = Match(index.videos[num]["video_id"], float(np.median(sims)), votes)
            if best is None or (match.votes, match.similarity) > (best.votes, best.similarity):
                best = match
        return best

    def process_batch(self, works: list[Work]) -> list[Work]:
        # One by one, so that copies inside one batch dedup against each other too.
        for work in works:
            if work.skip:
                continue
            try:
                self.process_one(work)
            except Exception as exc:  # noqa: BLE001 - never raise out of a stage
                work.item.fail(self.name, "neardup_error", f"{type(exc).__name__}: {exc}"[:300])
                self._count("neardup_error")
        if self.flush_seconds == 0 or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return works

    def process_one(self, work: Work) -> None:
        vectors = work.extras.get("dedup_embeddings")
        model = work.extras.get("dedup_model") or work.item.embedding_model
        if vectors is None:
            vectors = work.embeddings
        if vectors is None or len(vectors) == 0 or not model:
            work.item.fail(self.name, "no_embeddings", "nothing to compare")
            self._count("no_embeddings")
            return
        item = work.item
        video_id = item.video_id or item.sha256 or item.url
        index = self.index_for(model, int(vectors.shape[1]))
        if video_id in index.by_id and index.videos[index.by_id[video_id]]["alive"]:
            self._count("already_indexed")  # a redelivered entry: it is the kept copy
            return
        phash = item.phash if phash_value(item.phash) is not None else None
        if item.phash is not None and phash is None:
            self._count("bad_phash")  # malformed: this item skips the phash layer
        per_video = index.best_per_video(vectors, self.k)  # kept video -> best sim per frame
        match = self.find_phash(index, phash, per_video) or self.find(per_video, index)
        q, duration = quality(item, work.frames), float(item.duration or 0.0)
        if match is None:
            index.add(video_id, vectors, q, duration, phash)
            self._count("kept")
            return
        self._count(f"match_{match.layer}")
        log.debug("%s matches %s by %s (similarity %.3f)", video_id, match.video_id, match.layer, match.similarity)
        kept = index.videos[index.by_id[match.video_id]]
        longer_enough = duration >= self.min_duration_ratio * float(kept.get("duration") or 0.0)
        if self.prefer_better and longer_enough and q > 1.05 * float(kept.get("quality") or 0.0):
            index.remove(match.video_id)
            index.add(video_id, vectors, q, duration, phash)
            work.updates.append(
                {
                    "video_id": match.video_id,
                    "status": "duplicate",
                    "duplicate_of": video_id,
                    "similarity": round(match.similarity, 4),
                }
            )
            self._count("kept_better")
            return
        item.status = "duplicate"
        item.duplicate_of = match.video_id
        item.similarity = round(match.similarity, 4)
        self._count("duplicate")

    def flush(self) -> None:
        for model, index in self.indexes.items():
            if index.dirty:
                index.save(self.folder(model))
        self._last_flush = time.monotonic()

    def teardown(self) -> None:
        self.flush()
