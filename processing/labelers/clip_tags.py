"""Zero-shot tags with CLIP over a configurable vocabulary (transformers CLIPModel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.vision.models import load_clip
from processing.vision.image import pick_frames
from processing.work import Work

DEFAULT_VOCABULARY = (
    "people", "a person talking", "animals", "a cartoon", "a city street", "nature", "sports",
    "a car", "food", "text on screen", "a video game", "music performance", "outer space",
    "indoors", "outdoors", "night", "water", "a screen recording",
)


class ClipTagsLabeler(Labeler):
    """Prompt ``"a video frame of {term}"`` per term; softmax of scaled cosine, averaged over frames."""

    name = "clip_tags"

    def __init__(self, model: str = "", vocabulary: tuple[str, ...] | list[str] = DEFAULT_VOCABULARY,
                 top_k: int = 5, frames: int = 4, device: str = "cpu",
                 template: str = "a video frame of {}"):
        if not model:
            raise ValueError("clip_tags needs a CLIP model (CLIP_MODEL: a local folder or hub id)")
        vocabulary = [v.strip() for v in vocabulary if v and v.strip()]
        if not vocabulary:
            raise ValueError("clip_tags vocabulary must hold at least one term")
        if "{}" not in template:
            raise ValueError(f"template must contain '{{}}', got {template!r}")
        self.spec = model
        self.model = f"clip:{model}"
        self.vocabulary = vocabulary
        self.top_k = top_k
        self.frames = frames
        self.device = device
        self.template = template
        self.clip = None
        self.text = None

    def setup(self) -> None:
        self.clip = load_clip(self.spec, self.device)
        self.text = self.clip.text_features([self.template.format(v) for v in self.vocabulary])

    def label(self, work: Work) -> dict:
        if work.item.embedding_model == self.model and work.embeddings is not None:
            images = work.embeddings  # the stage already embedded the frames with this CLIP
        else:
            images = self.clip.image_embeddings(pick_frames(work.frames, self.frames))
        logits = self.clip.logit_scale * images @ self.text.T
        z = logits - logits.max(axis=1, keepdims=True)
        probs = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).mean(axis=0)
        order = np.argsort(-probs)[: self.top_k]
        return {"tags": [{"name": self.vocabulary[i], "score": round(float(probs[i]), 4)} for i in order]}
