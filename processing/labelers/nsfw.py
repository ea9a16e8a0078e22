"""NSFW score with NudeNet (its 320n ONNX detector ships inside the nudenet wheel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.vision.models import NUDENET_CLASSES, load_nudenet
from processing.work import Work

EXPLICIT = {
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
}
EXPLICIT_COLUMNS = [NUDENET_CLASSES.index(c) for c in sorted(EXPLICIT)]
MIN_DETECTION = 0.25  # nudenet's own cut (its NMS score threshold) for listing a class


class NsfwLabeler(Labeler):
    """score = the confidence of an explicit class that at least ``min_frames`` of ``frames``
    sampled frames reach; present = score >= threshold. One frame is not enough by default:
    NudeNet scores Big Buck Bunny's chest 0.5-0.76 on 2 of 8 frames (bench/labels.py). The
    detector pass is shared with the faces labeler (same frames, one run)."""

    name = "nsfw"
    model = "nudenet-3.4:320n"

    def __init__(self, frames: int = 3, threshold: float = 0.5, min_frames: int = 2, threads: int | None = None):
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if not isinstance(min_frames, int) or min_frames < 1:
            raise ValueError(f"min_frames must be a positive integer, got {min_frames!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.frames = frames
        self.threshold = float(threshold)
        self.min_frames = min_frames
        self.threads = threads
        self.detector = None

    def setup(self) -> None:
        self.detector = load_nudenet(self.threads)

    def label(self, work: Work) -> dict:
        scores = self.detector.scores_of(work.frames, self.frames)
        best = dict(zip(NUDENET_CLASSES, scores.max(axis=0).tolist())) if len(scores) else {}
        explicit = np.sort(scores[:, EXPLICIT_COLUMNS].max(axis=1))[::-1] if len(scores) else np.zeros(1)
        score = float(explicit[min(self.min_frames, len(explicit)) - 1])  # the k-th best frame
        # Detector classes (FACE_FEMALE, FEET_EXPOSED...) are evidence, not content tags: they are
        # kept apart so search facets are not flooded with body-part names.
        detections = [{"name": c, "score": round(s, 4)} for c, s in sorted(best.items(), key=lambda x: -x[1])
                      if s >= MIN_DETECTION]  # fmt: skip
        return {"score": round(score, 4), "present": score >= self.threshold, "detections": detections}
