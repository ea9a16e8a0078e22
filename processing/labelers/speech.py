"""Speech presence with Silero VAD (its model ships inside the silero-vad wheel), checked for syllables."""

from __future__ import annotations

import numpy as np

from processing.labelers.base import Labeler
from processing.work import Work

BAND_HZ = (300.0, 3000.0)  # where the energy of voiced speech is
HOP_S, WINDOW_S = 0.01, 0.025


def band_envelope(audio: np.ndarray, rate: int) -> np.ndarray:
    """Energy (dB) of the 300-3000 Hz band every 10 ms (25 ms Hann windows)."""
    hop, win = int(HOP_S * rate), int(WINDOW_S * rate)
    if len(audio) < win:
        return np.zeros(0, np.float32)
    n = 1 + (len(audio) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float32), win)[::hop][:n]
    power = np.abs(np.fft.rfft(frames * np.hanning(win).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / rate)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    return (10.0 * np.log10(power[:, band].sum(axis=1) + 1e-10)).astype(np.float32)


def syllable_rate(envelope: np.ndarray, swing_db: float = 6.0) -> float:
    """Energy peaks per second that rise and fall by ``swing_db`` (syllable nuclei: speech has
    3-7 a second; a held note, a chord or a yawn has about one)."""
    if len(envelope) < 10:
        return 0.0
    smooth = np.convolve(envelope, np.ones(5) / 5, mode="same")  # 50 ms
    peaks, rising, low, high = 0, True, smooth[0], smooth[0]
    for value in smooth:
        if rising:
            low = min(low, value)
            if value - low >= swing_db:
                rising, high, peaks = False, value, peaks + 1
        else:
            high = max(high, value)
            if high - value >= swing_db:
                rising, low = True, value
    return peaks / (len(envelope) * HOP_S)


class SpeechLabeler(Labeler):
    """present = at least ``min_speech`` seconds of speech: the Silero VAD's segments (at
    ``threshold``) that last at least ``min_segment`` s and carry at least
    ``min_syllable_rate`` syllable-like energy peaks per second. The VAD alone calls music
    speech (Big Buck Bunny's score: 43% of it); the syllable check turns that down and keeps
    speech, over music too (bench/labels.py). Audio quieter than ``silence_db`` dBFS (RMS) is
    silence, without running the VAD. score = the share of the audio that is checked speech.
    """

    name = "speech"
    needs_audio = True
    model = "silero-vad-6.2+syllables"

    def __init__(self, min_speech: float = 0.5, threshold: float = 0.5, min_segment: float = 0.5,
                 min_syllable_rate: float = 2.5, silence_db: float = -60.0):  # fmt: skip
        if min_speech < 0:
            raise ValueError(f"min_speech must be >= 0 seconds, got {min_speech!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if min_syllable_rate < 0 or min_segment < 0:
            raise ValueError("min_syllable_rate and min_segment must be >= 0")
        self.min_speech = float(min_speech)
        self.threshold = float(threshold)
        self.min_segment = float(min_segment)
        self.min_syllable_rate = float(min_syllable_rate)
        self.silence_db = float(silence_db)
        self.vad = None

    def setup(self) -> None:
        from silero_vad import load_silero_vad

        self.vad = load_silero_vad()

    def label(self, work: Work) -> dict:
        audio, rate = work.audio, work.audio_rate
        if audio is None or not rate or len(audio) < rate // 10:
            return {"present": False, "score": 0.0}  # no audio track: no speech
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        rms_db = 10.0 * np.log10(float(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)
        if rms_db < self.silence_db:
            return {"present": False, "score": 0.0}  # a silent track
        speech = sum(end - start for start, end in self.speech_segments(audio, rate))
        share = speech / (len(audio) / rate)
        return {"present": speech >= max(self.min_speech, 1e-9), "score": round(min(1.0, share), 4)}

    def speech_segments(self, audio: np.ndarray, rate: int) -> list[tuple[float, float]]:
        """(start, end) seconds of the VAD's segments that pass the syllable check."""
        import torch
        from silero_vad import get_speech_timestamps

        segments = get_speech_timestamps(torch.from_numpy(audio), self.vad, sampling_rate=rate,
                                         threshold=self.threshold, return_seconds=True)  # fmt: skip
        envelope = band_envelope(audio, rate)
        kept = []
        for seg in segments:
            start, end = float(seg["start"]), float(seg["end"])
            if end - start < self.min_segment:
                continue
            piece = envelope[int(start / HOP_S) : int(end / HOP_S)]
            if syllable_rate(piece) >= self.min_syllable_rate:
                kept.append((start, end))
        return kept
