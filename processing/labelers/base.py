"""The labeler contract: one named model that turns a work's frames or audio into a label dict."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from processing.work import Work


class Labeler(ABC):
    """``label(work)`` returns one or more of ``tags`` [{name, score}], ``text``, ``score``,
    ``present``; the stage adds ``model`` and records errors. Models load in ``setup()``."""

    name: str = "labeler"
    model: str = "unknown"
    needs_audio: bool = False  # True: FramesStage decodes the audio track for it

    def setup(self) -> None:
        """Load the model (once per actor)."""

    @abstractmethod
    def label(self, work: Work) -> dict[str, Any]:
        """The labeler's output for one video."""
