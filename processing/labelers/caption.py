"""Captions with a BLIP-style model (transformers BlipForConditionalGeneration)."""

from __future__ import annotations

from processing.labelers.base import Labeler
from processing.vision.models import load_captioner
from processing.vision.image import pick_frames
from processing.work import Work


class CaptionLabeler(Labeler):
    """Caption of the middle frame (``frames`` > 1: the distinct captions joined with ' | ')."""

    name = "caption"

    def __init__(self, model: str = "", frames: int = 1, device: str = "cpu", max_new_tokens: int = 30):
        if not model:
            raise ValueError("caption needs a BLIP model (CAPTION_MODEL: a local folder or hub id)")
        if not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        self.spec = model
        self.model = f"blip:{model}"
        self.frames = frames
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.captioner = None

    def setup(self) -> None:
        self.captioner = load_captioner(self.spec, self.device)
        self.captioner.max_new_tokens = self.max_new_tokens

    def label(self, work: Work) -> dict:
        captions: list[str] = []
        for text in self.captioner(pick_frames(work.frames, self.frames)):
            if text not in captions:
                captions.append(text)
        return {"text": " | ".join(captions)}
