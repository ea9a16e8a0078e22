"""Labelers for LabelsStage: one model each, by name (imagenet, ocr, nsfw, faces, speech, ...)."""

from __future__ import annotations

from processing.labelers.base import Labeler, pick_frames
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
DEFAULT_LABELERS = ("imagenet", "ocr", "nsfw", "faces", "speech")
OPT_IN_LABELERS = ("clip_tags", "caption", "transcript")

__all__ = ["LABELERS", "DEFAULT_LABELERS", "OPT_IN_LABELERS", "Labeler", "pick_frames"]
