"""The unit of work that flows between stages: ``Work`` (one video), ``WorkBatch``, ``Demotion``.

Every field a stage hands to a later one is named and typed here (no free-form extras), so a
reader sees what FramesStage gives EmbedStage, and what EmbedStage gives NearDupStage and the
labelers. Arrays never reach the catalogue: the last step calls ``Work.release``; the writer
keeps ``item`` and ``descriptor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crawler.items import DUPLICATE, INDEXED, VideoItem


@dataclass(frozen=True)
class Demotion:
    """Another video's place in its near-duplicate cluster, changed by this video (NearDupStage).

    A kept video demoted to the duplicate of a better copy, or a duplicate re-pointed at its
    cluster's new canonical (``duplicate_of`` always names the canonical). ``duplicate_of``
    None: the video became its cluster's canonical (a promotion, rare: see neardup.py).
    """

    video_id: str  # the video whose place changed
    duplicate_of: str | None  # its cluster's canonical now; None: it is the canonical
    similarity: float | None  # to that canonical (None for a promotion)

    @property
    def promoted(self) -> bool:
        return self.duplicate_of is None

    def fields(self) -> dict:
        """The catalogue/item fields this changes on that video."""
        if self.promoted:
            return {"status": INDEXED, "duplicate_of": None, "similarity": None}
        return {"status": DUPLICATE, "duplicate_of": self.duplicate_of, "similarity": self.similarity}


@dataclass(eq=False)  # identity: two works are the same only if they are one object
class Work:
    """One video in flight through the workers: the item plus what stages computed for it."""

    item: VideoItem
    entry_id: str | None = None  # the Redis stream entry this came from
    # FramesStage
    frames: np.ndarray | None = None  # (N, H, W, 3) uint8 RGB, sampled over the whole video
    frame_times: list[float] = field(default_factory=list)  # seconds, one per frame
    audio: np.ndarray | None = None  # mono float32 at ``audio_rate``, the first seconds
    audio_rate: int | None = None  # Hz
    # EmbedStage
    embeddings: np.ndarray | None = None  # (N, D) float32, L2-normalised, one per frame
    descriptor: np.ndarray | None = None  # (D,) float32, L2-normalised video descriptor
    logits: np.ndarray | None = None  # (N, 1000) ImageNet logits (EfficientNet-Lite0 only)
    dedup_embeddings: np.ndarray | None = None  # what the near-dup index compares (N, D')
    dedup_model: str | None = None  # the model (and variant) of ``dedup_embeddings``
    # NearDupStage: other videos whose cluster place this one changed (demoted, re-pointed)
    updates: list[Demotion] = field(default_factory=list)

    @property
    def skip(self) -> bool:
        """True once the item is decided (failed, duplicate, rejected): later stages pass it by."""
        return self.item.decided

    @property
    def has_frames(self) -> bool:
        return self.frames is not None and len(self.frames) > 0

    def release(self) -> None:
        """Drop the arrays the catalogue does not keep (before the batch leaves the actors)."""
        self.frames = self.audio = self.embeddings = self.logits = self.dedup_embeddings = None


@dataclass(eq=False)
class WorkBatch:
    """Works that move through the steps together, and what each stage counted on them.

    ``stats`` maps a stage name to its counters for this batch: one outcome count per video
    (``ok``, a failure code, ``kept``, ``duplicate``...), finer counters some stages add
    (``match_phash``, ``ocr/ok``), ``videos`` (works it processed) and ``seconds`` (time
    spent on them). They travel with the batch to the writer, which adds them up in Redis.
    """

    works: list[Work]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
