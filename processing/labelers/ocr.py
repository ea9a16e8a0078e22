"""On-screen text with RapidOCR (PP-OCR ONNX models shipped inside the rapidocr wheel)."""

from __future__ import annotations

import re

import numpy as np

from processing.labelers.base import Labeler
from processing.vision.image import pick_frames
from processing.vision.models import cpu_threads
from processing.work import Work


class OcrLabeler(Labeler):
    """Text found on ``frames`` frames (deduplicated, in reading order of the frames).

    The text detector runs on each frame at ``det_side`` short side (default 224: the frames as
    FramesStage samples them, no upscaling); the recogniser runs only on the boxes it finds, so
    a frame without text costs one detector pass. RapidOCR's default upscales the short side to
    736 first: ~10x the detector's work for the same words on bench/labels.py's set, whose
    smallest text is 24 px on 720p. The 180-degree text classifier is off (video text stands
    upright). A line is kept when its score is >= ``min_score`` and it has at least
    ``min_chars`` letters or digits (a lone "O" read off a round shape is noise).
    """

    name = "ocr"
    model = "rapidocr-3.10:PP-OCRv6-small"

    def __init__(self, frames: int = 2, min_score: float = 0.6, min_chars: int = 2, det_side: int = 224,
                 max_chars: int = 2000, threads: int | None = None):  # fmt: skip
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if not isinstance(det_side, int) or det_side < 32:
            raise ValueError(f"det_side must be an integer >= 32, got {det_side!r}")
        if not isinstance(min_chars, int) or min_chars < 1:
            raise ValueError(f"min_chars must be a positive integer, got {min_chars!r}")
        self.frames = frames
        self.min_score = float(min_score)
        self.min_chars = min_chars
        self.det_side = det_side
        self.max_chars = max_chars
        self.threads = threads
        self.engine = None

    def setup(self) -> None:
        import logging

        from rapidocr import RapidOCR

        threads = cpu_threads(self.threads)
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.engine = RapidOCR(params={
            "Global.use_cls": False, "Global.log_level": "error",
            "Det.limit_side_len": self.det_side, "Det.limit_type": "min",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })  # fmt: skip
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # "no text found" is not a warning

    def label(self, work: Work) -> dict:
        texts: list[str] = []
        scores: list[float] = []
        for frame in pick_frames(work.frames, self.frames):
            result = self.engine(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
            for text, score in zip(result.txts or (), result.scores or ()):
                text = text.strip()
                if score < self.min_score or len(re.sub(r"[\W_]", "", text)) < self.min_chars:
                    continue
                if text not in texts:
                    texts.append(text)
                    scores.append(float(score))
        text = " ".join(texts)[: self.max_chars]
        return {
            "text": text,
            "present": bool(text),
            "score": round(float(np.mean(scores)), 4) if scores else 0.0,
        }
