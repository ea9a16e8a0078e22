"""The labeler contract: one named model that turns a work's frames or audio into a label dict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from processing.stages.base import Work


def pick_frames(frames: np.ndarray | None, n: int) -> np.ndarray:
    """``n`` evenly spaced frames (inner ones first: they avoid fades and title cards)."""
    if frames is None or len(frames) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)
    if len(frames) <= n:
        return frames
    idx = np.linspace(0, len(frames) - 1, n + 2)[1:-1].round().astype(int)
    return frames[idx]


class Labeler(ABC):
    """``label(work)`` returns one or more of ``tags`` [{name, score}], ``text``, ``score``,
    ``present``; the stage adds ``model`` and records errors. Models load in ``setup()``."""

    name: str = "labeler"
    model: str = "unknown"

    def setup(self) -> None:
        """Load the model (once per actor)."""

    @abstractmethod
    def label(self, work: Work) -> dict[str, Any]:
        """The labeler's output for one video."""
