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
``stats`` counts which layer matched (``match_phash`` / ``match_embedding``). The hashes
live in each model's index (processing/vision/frame_index.py), so a new embedding model
starts a new hash set too.

The better copy (resolution x bitrate, at a comparable duration) stays canonical, whichever
layer matched: if a new video beats the kept one, the kept one becomes the new one's
duplicate (a ``Demotion`` in ``work.updates``) and its frames and hash leave the index
(tombstones). Outcomes: ``kept``, ``kept_better``, ``duplicate``, ``already_indexed`` (a
redelivered kept video), ``no_embeddings``, ``neardup_error``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crawler.errors import MediaError
from crawler.items import DUPLICATE
from processing.stages.base import Resources, Stage
from processing.vision.frame_index import FrameIndex, phash_value
from processing.vision.image import looks_gray, trim_borders
from processing.work import Demotion, Work

log = logging.getLogger(__name__)


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
        trimmed = trim_borders(frames)
        pixels *= (trimmed.shape[1] * trimmed.shape[2]) / (frames.shape[1] * frames.shape[2])
        if looks_gray(frames):
            pixels *= 0.5
    return pixels * float(rate or 1)


class NearDupStage(Stage):
    """Mark videos whose frames mostly match one kept video as ``duplicate``; index the rest."""

    name = "neardup"
    resources = Resources(num_cpus=1)
    error_code = "neardup_error"

    def __init__(
        self,
        *,
        index_dir: str | Path,
        frame_threshold: float,
        min_match: float,
        approx_threshold: int,
        phash_max_distance: int,
        k: int = 32,
        flush_seconds: float = 5.0,
        prefer_better: bool = True,
        min_duration_ratio: float = 0.9,
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

    @classmethod
    def from_config(cls, cfg, **overrides) -> NearDupStage:
        return cls(**{"index_dir": cfg.index_dir, "frame_threshold": cfg.neardup_threshold,
                      "min_match": cfg.neardup_min_match,
                      "approx_threshold": cfg.neardup_approx_threshold,
                      "phash_max_distance": cfg.phash_max_distance} | overrides)  # fmt: skip

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
            self.stats.count("phash_unconfirmed")
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
        super().process_batch(works)  # one by one: copies inside one batch dedup against each other
        if self.flush_seconds == 0 or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return works

    def process_one(self, work: Work) -> str:
        vectors = work.dedup_embeddings if work.dedup_embeddings is not None else work.embeddings
        model = work.dedup_model or work.item.embedding_model
        if vectors is None or len(vectors) == 0 or not model:
            raise MediaError("no_embeddings", "nothing to compare")
        item = work.item
        video_id = item.video_id or item.sha256 or item.url
        index = self.index_for(model, int(vectors.shape[1]))
        if video_id in index.by_id and index.videos[index.by_id[video_id]]["alive"]:
            return "already_indexed"  # a redelivered entry: it is the kept copy
        phash = item.phash if phash_value(item.phash) is not None else None
        if item.phash is not None and phash is None:
            self.stats.count("bad_phash")  # malformed: this item skips the phash layer
        per_video = index.best_per_video(vectors, self.k)  # kept video -> best sim per frame
        match = self.find_phash(index, phash, per_video) or self.find(per_video, index)
        q, duration = quality(item, work.frames), float(item.duration or 0.0)
        if match is None:
            index.add(video_id, vectors, q, duration, phash)
            return "kept"
        self.stats.count(f"match_{match.layer}")
        log.debug("%s matches %s by %s (similarity %.3f)", video_id, match.video_id, match.layer, match.similarity)
        kept = index.videos[index.by_id[match.video_id]]
        longer_enough = duration >= self.min_duration_ratio * float(kept.get("duration") or 0.0)
        if self.prefer_better and longer_enough and q > 1.05 * float(kept.get("quality") or 0.0):
            index.remove(match.video_id)
            index.add(video_id, vectors, q, duration, phash)
            work.updates.append(Demotion(match.video_id, video_id, round(match.similarity, 4)))
            return "kept_better"
        item.status = DUPLICATE
        item.duplicate_of = match.video_id
        item.similarity = round(match.similarity, 4)
        return "duplicate"

    def flush(self) -> None:
        for model, index in self.indexes.items():
            if index.dirty:
                index.save(self.folder(model))
        self._last_flush = time.monotonic()

    def teardown(self) -> None:
        self.flush()
