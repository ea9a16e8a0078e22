"""Face presence with NudeNet's face classes (its 320n ONNX detector ships inside the nudenet wheel)."""

from __future__ import annotations

from processing.labelers.base import Labeler
from processing.vision.models import NUDENET_CLASSES, load_nudenet
from processing.work import Work

FACE_CLASSES = [NUDENET_CLASSES.index(c) for c in ("FACE_FEMALE", "FACE_MALE")]


class FacesLabeler(Labeler):
    """present = a human face scoring >= ``min_score`` on at least ``min_frames`` of ``frames``
    sampled frames; score = the fraction of those frames with one.

    NudeNet's face classes, not OpenCV's Haar cascade: on bench/labels.py's set the cascade
    (minNeighbors 5, 2 frames) found Big Buck Bunny's cartoon face, a pole in the bikes clip and
    the Earth; NudeNet scores the real faces ~0.85 and those <= 0.4. The detector pass is shared
    with the NSFW labeler (same frames, one run). Gender classes are merged: the label says
    "face", nothing more.
    """

    name = "faces"
    model = "nudenet-3.4:320n:face"

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
        self.detector = load_nudenet(self.threads)

    def label(self, work: Work) -> dict:
        scores = self.detector.scores_of(work.frames, self.frames)
        per_frame = scores[:, FACE_CLASSES].max(axis=1) if len(scores) else scores[:, 0]
        hits = int((per_frame >= self.min_score).sum())
        fraction = hits / len(per_frame) if len(per_frame) else 0.0
        present = hits >= min(self.min_frames, len(per_frame)) and hits > 0
        return {
            "present": present,
            "score": round(fraction, 4),
            "tags": [{"name": "face", "score": round(fraction, 4)}] if present else [],
        }
