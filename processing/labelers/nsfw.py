"""NSFW score with NudeNet (its 320n ONNX detector ships inside the nudenet wheel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.vision.image import pick_frames
from processing.work import Work

EXPLICIT = {
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
}


class NsfwLabeler(Labeler):
    """score = highest confidence of an explicit class on a few frames; present = score >= threshold."""

    name = "nsfw"
    model = "nudenet-3.4:320n"

    def __init__(self, frames: int = 2, threshold: float = 0.5):
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        self.frames = frames
        self.threshold = float(threshold)
        self.detector = None

    def setup(self) -> None:
        from nudenet import NudeDetector

        self.detector = NudeDetector()

    def label(self, work: Work) -> dict:
        best: dict[str, float] = {}
        for frame in pick_frames(work.frames, self.frames):
            bgra = np.concatenate([frame[..., ::-1], np.full(frame.shape[:2] + (1,), 255, np.uint8)], -1)
            for det in self.detector.detect(np.ascontiguousarray(bgra)):
                cls, score = det["class"], float(det["score"])
                best[cls] = max(best.get(cls, 0.0), score)
        score = max((s for c, s in best.items() if c in EXPLICIT), default=0.0)
        # Detector classes (FACE_FEMALE, FEET_EXPOSED...) are evidence, not content tags: they are
        # kept apart so search facets are not flooded with body-part names.
        detections = [{"name": c, "score": round(s, 4)} for c, s in sorted(best.items(), key=lambda x: -x[1])]
        return {"score": round(score, 4), "present": score >= self.threshold, "detections": detections}
