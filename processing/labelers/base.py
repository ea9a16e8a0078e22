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
    device: str = "cpu"  # torch device of a model labeler; "auto" is decided by LabelsStage.setup, in the actor

    def setup(self) -> None:
        """Load the model (once per actor)."""

    @abstractmethod
    def label(self, work: Work) -> dict[str, Any]:
        """The labeler's output for one video."""


class FrameVoteLabeler(Labeler):
    """A labeler over one shared NudeNet pass: ``frames`` sampled frames, a score bar, and the
    number of frames that must reach it (one frame is not enough by default)."""

    def __init__(self, frames: int = 3, min_score: float = 0.5, min_frames: int = 2, threads: int | None = None):
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if not isinstance(min_frames, int) or min_frames < 1:
            raise ValueError(f"min_frames must be a positive integer, got {min_frames!r}")
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"min_score must be in (0, 1], got {min_score!r}")
        self.frames = frames
        self.min_score = float(min_score)
        self.min_frames = min_frames
        self.threads = threads
        self.detector = None

    def setup(self) -> None:
        from processing.vision.models import load_nudenet

        self.detector = load_nudenet(self.threads)
