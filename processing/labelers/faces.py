"""Face presence with OpenCV's Haar cascade (the XML ships inside opencv-python-headless)."""

from __future__ import annotations

import cv2
import numpy as np

from processing.labelers.base import Labeler
from processing.work import Work


class FacesLabeler(Labeler):
    """present = a frontal face on at least ``min_frames`` sampled frames (one stray Haar hit on
    a round object is common); score = fraction of frames with a face."""

    name = "faces"
    model = "opencv-4.13:haarcascade_frontalface_default"

    def __init__(self, min_size: int = 24, min_neighbors: int = 5, min_frames: int = 2):
        if not isinstance(min_size, int) or min_size < 8:
            raise ValueError(f"min_size must be an integer >= 8, got {min_size!r}")
        if not isinstance(min_frames, int) or min_frames < 1:
            raise ValueError(f"min_frames must be a positive integer, got {min_frames!r}")
        self.min_size = min_size
        self.min_frames = min_frames
        self.min_neighbors = min_neighbors
        self.cascade = None

    def setup(self) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise RuntimeError(f"cannot load Haar cascade {path}")

    def label(self, work: Work) -> dict:
        counts = []
        for frame in work.frames:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            faces = self.cascade.detectMultiScale(
                gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(self.min_size,) * 2
            )
            counts.append(len(faces))
        fraction = float(np.mean([c > 0 for c in counts])) if counts else 0.0
        present = bool(counts) and sum(c > 0 for c in counts) >= min(self.min_frames, len(counts))
        return {
            "present": present,
            "score": round(fraction, 4),
            "tags": [{"name": "face", "score": round(fraction, 4)}] if present else [],
        }
