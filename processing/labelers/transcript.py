"""Speech transcripts with a Whisper-style model (transformers WhisperForConditionalGeneration)."""

from __future__ import annotations

from processing.labelers.base import Labeler
from processing.vision.models import load_transcriber
from processing.work import Work


class TranscriptLabeler(Labeler):
    """Transcript of the decoded audio (the first ~30 s that FramesStage keeps)."""

    name = "transcript"
    needs_audio = True

    def __init__(self, model: str = "", device: str = "cpu", max_new_tokens: int = 128):
        if not model:
            raise ValueError("transcript needs a Whisper model (ASR_MODEL: a local folder or hub id)")
        self.spec = model
        self.model = f"whisper:{model}"
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.asr = None

    def setup(self) -> None:
        self.asr = load_transcriber(self.spec, self.device)
        self.asr.max_new_tokens = self.max_new_tokens

    def label(self, work: Work) -> dict:
        if work.audio is None or len(work.audio) == 0:
            return {"text": "", "present": False}
        text = self.asr(work.audio, work.audio_rate)
        return {"text": text, "present": bool(text)}
