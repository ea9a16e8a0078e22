"""Labelers for LabelsStage: one model each, by name (the default list is settings.LABELERS)."""

from __future__ import annotations

from processing.labelers.base import Labeler
from processing.labelers.caption import CaptionLabeler
from processing.labelers.clip_tags import ClipTagsLabeler
from processing.labelers.faces import FacesLabeler
from processing.labelers.imagenet import ImagenetLabeler
from processing.labelers.nsfw import NsfwLabeler
from processing.labelers.ocr import OcrLabeler
from processing.labelers.speech import SpeechLabeler
from processing.labelers.transcript import TranscriptLabeler

LABELERS: dict[str, type[Labeler]] = {
    cls.name: cls
    for cls in (
        ImagenetLabeler, OcrLabeler, NsfwLabeler, FacesLabeler, SpeechLabeler,
        ClipTagsLabeler, CaptionLabeler, TranscriptLabeler,
    )
}

__all__ = ["LABELERS", "Labeler"]
