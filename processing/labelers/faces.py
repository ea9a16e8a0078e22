"""Face presence with NudeNet's face classes (its 320n ONNX detector ships inside the nudenet wheel)."""

from __future__ import annotations

from processing.labelers.base import FrameVoteLabeler
from processing.vision.models import NUDENET_CLASSES
from processing.work import Work

FACE_CLASSES = [NUDENET_CLASSES.index(c) for c in ("FACE_FEMALE", "FACE_MALE")]


class FacesLabeler(FrameVoteLabeler):
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
