"""NSFW score with NudeNet (its 320n ONNX detector ships inside the nudenet wheel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import FrameVoteLabeler
from processing.vision.models import NUDENET_CLASSES
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


class NsfwLabeler(FrameVoteLabeler):
    """score = the confidence of an explicit class that at least ``min_frames`` of ``frames``
    sampled frames reach; present = score >= ``min_score``. One frame is not enough by default:
    NudeNet scores Big Buck Bunny's chest 0.5-0.76 on 2 of 8 frames (bench/labels.py). The
    detector pass is shared with the faces labeler (same frames, one run)."""

    name = "nsfw"
    model = "nudenet-3.4:320n"

    def label(self, work: Work) -> dict:
        scores = self.detector.scores_of(work.frames, self.frames)
        best = dict(zip(NUDENET_CLASSES, scores.max(axis=0).tolist())) if len(scores) else {}
        explicit = np.sort(scores[:, EXPLICIT_COLUMNS].max(axis=1))[::-1] if len(scores) else np.zeros(1)
        score = float(explicit[min(self.min_frames, len(explicit)) - 1])  # the k-th best frame
        # Detector classes (FACE_FEMALE, FEET_EXPOSED...) are evidence, not content tags: they are
        # kept apart so search facets are not flooded with body-part names.
        detections = [{"name": c, "score": round(s, 4)} for c, s in sorted(best.items(), key=lambda x: -x[1])
                      if s >= MIN_DETECTION]  # fmt: skip
        return {"score": round(score, 4), "present": score >= self.min_score, "detections": detections}
