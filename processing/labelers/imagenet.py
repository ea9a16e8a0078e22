"""ImageNet-1k top-k tags from EfficientNet-Lite0 logits (reused from EmbedStage when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from processing.labelers.base import Labeler
from processing.vision import models
from processing.work import Work

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (Keras' imagenet_class_index)."""
    return CLASSES_FILE.read_text().splitlines()


class ImagenetLabeler(Labeler):
    """Up to ``top_k`` classes of the video: softmax per frame, averaged over frames; a class
    below ``min_score`` is never a tag, so a plain screen gets none (it used to keep its best
    class whatever its score: ``jellyfish 0.02`` on a blue screen)."""

    name = "imagenet"
    model = "efficientnet-lite0"

    def __init__(self, top_k: int = 5, min_score: float = 0.1):
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if not 0.0 < min_score <= 1.0:
            raise ValueError(f"min_score must be in (0, 1], got {min_score!r}")
        self.top_k = top_k
        self.min_score = float(min_score)
        self.classes: list[str] = []
        self.embedder = None

    def setup(self) -> None:
        self.classes = imagenet_classes()

    def logits(self, work: Work) -> np.ndarray:
        logits = work.logits
        if logits is None:  # the embedding model is not EfficientNet: run it here
            if self.embedder is None:
                self.embedder = models.load_image_embedder(models.EFFICIENTNET, "cpu")
            logits = self.embedder(work.frames).logits
        return np.asarray(logits, dtype=np.float32)

    def label(self, work: Work) -> dict:
        logits = self.logits(work)
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        mean = probs.mean(axis=0)
        order = np.argsort(-mean)[: self.top_k]
        tags = [{"name": self.classes[i], "score": round(float(mean[i]), 4)} for i in order if mean[i] >= self.min_score]
        return {"tags": tags}
