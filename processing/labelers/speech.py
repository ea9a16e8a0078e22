"""Speech presence with Silero VAD (its model ships inside the silero-vad wheel)."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.work import Work


class SpeechLabeler(Labeler):
    """present = at least ``min_speech`` seconds of speech in the decoded audio; score = its share."""

    name = "speech"
    model = "silero-vad-6.2"

    def __init__(self, min_speech: float = 0.5):
        if min_speech < 0:
            raise ValueError(f"min_speech must be >= 0 seconds, got {min_speech!r}")
        self.min_speech = float(min_speech)
        self.vad = None

    def setup(self) -> None:
        from silero_vad import load_silero_vad

        self.vad = load_silero_vad()

    def label(self, work: Work) -> dict:
        import torch
        from silero_vad import get_speech_timestamps

        audio, rate = work.audio, work.audio_rate
        if audio is None or not rate or len(audio) < rate // 10:
            return {"present": False, "score": 0.0}  # no audio track: no speech
        segments = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            self.vad,
            sampling_rate=rate,
            return_seconds=True,
        )
        speech = float(sum(s["end"] - s["start"] for s in segments))
        share = speech / (len(audio) / rate)
        return {"present": speech >= self.min_speech, "score": round(min(1.0, share), 4)}
