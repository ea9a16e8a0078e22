"""On-screen text with RapidOCR (PP-OCR ONNX models shipped inside the rapidocr wheel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.vision.image import pick_frames
from processing.work import Work


class OcrLabeler(Labeler):
    """Text found on a few frames (deduplicated, in reading order of the frames)."""

    name = "ocr"
    model = "rapidocr-3.10:PP-OCRv6-small"

    def __init__(self, frames: int = 2, min_score: float = 0.6, max_chars: int = 2000):
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        self.frames = frames
        self.min_score = float(min_score)
        self.max_chars = max_chars
        self.engine = None

    def setup(self) -> None:
        import logging

        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.engine = RapidOCR()
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # "no text found" is not a warning

    def label(self, work: Work) -> dict:
        texts: list[str] = []
        scores: list[float] = []
        for frame in pick_frames(work.frames, self.frames):
            result = self.engine(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
            for text, score in zip(result.txts or (), result.scores or ()):
                text = text.strip()
                if text and score >= self.min_score and text not in texts:
                    texts.append(text)
                    scores.append(float(score))
        text = " ".join(texts)[: self.max_chars]
        return {
            "text": text,
            "present": bool(text),
            "score": round(float(np.mean(scores)), 4) if scores else 0.0,
        }
