"""The one shape of a processing stage, and the unit of work that flows between stages.

A stage checks its configuration in ``__init__`` (bad config raises ``ValueError`` with a
precise message), loads heavy things (models, indexes) once in ``setup()``, and does its
work in ``process_batch(works) -> works``. Bad media never raises out of a stage: the error
is recorded on the item (``work.item.fail(stage, reason, message)``) and the batch goes on.
A stage skips works whose item is already decided (failed, duplicate, rejected).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crawler.items import VideoItem


@dataclass
class Work:
    """One video in flight through the workers: the item plus transient arrays.

    Arrays never reach the catalogue; the writer keeps ``item`` and ``descriptor``.
    """

    item: VideoItem
    entry_id: str | None = None  # the Redis stream entry this came from
    frames: np.ndarray | None = None  # (N, H, W, 3) uint8 RGB, sampled over the whole video
    frame_times: list[float] = field(default_factory=list)  # seconds, one per frame
    embeddings: np.ndarray | None = None  # (N, D) float32, L2-normalised, one per frame
    descriptor: np.ndarray | None = None  # (D,) float32, L2-normalised video descriptor
    extras: dict[str, Any] = field(default_factory=dict)  # stage-to-stage data (e.g. logits)
    # Catalogue updates for *other* videos decided here, e.g. a kept video demoted to
    # duplicate because this one is better: [{"video_id", "status", "duplicate_of", "similarity"}]
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def skip(self) -> bool:
        return self.item.decided


@dataclass(frozen=True)
class Resources:
    """What one actor of a stage needs from Ray."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


class Stage(ABC):
    """Base class of every processing stage."""

    name: str = "stage"
    resources: Resources = Resources()

    def setup(self) -> None:
        """Load models / indexes. Called once per actor before the first batch."""

    @abstractmethod
    def process_batch(self, works: list[Work]) -> list[Work]:
        """Process a batch; return the same works (decided ones passed through untouched)."""

    def teardown(self) -> None:
        """Release resources (flush indexes to disk...)."""
