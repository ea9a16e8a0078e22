"""Speech needs speech: music (synthesised, and Big Buck Bunny's score) is not, espeak-ng's voice is."""

import numpy as np
import pytest

from bench import labelset
from processing.labelers.speech import HOP_S, SpeechLabeler, band_envelope, syllable_rate

needs_espeak = pytest.mark.skipif(not labelset.have_espeak(), reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def labeler():
    lab = SpeechLabeler()
    lab.setup()
    return lab


def test_music_is_not_speech(labeler, clips, sample):
    out = labeler.label(sample(clips["music"]))
    assert out == {"present": False, "score": 0.0}


def test_big_buck_bunny_score_is_not_speech_though_the_vad_alone_says_so(labeler, sample, media):
    work = sample(media["bigbuckbunny"])
    vad_only = SpeechLabeler(min_syllable_rate=0.0)
    vad_only.vad = labeler.vad
    assert sum(e - s for s, e in vad_only.speech_segments(work.audio, work.audio_rate)) >= 0.5
    assert labeler.label(work)["present"] is False  # the syllable check turns it down


@needs_espeak
@pytest.mark.parametrize("name", ["speech", "speech_over_music"])
def test_speech_is_speech_alone_and_over_music(labeler, clips, sample, name):
    out = labeler.label(sample(clips[name]))
    assert out["present"] is True and out["score"] >= 0.5


def test_a_silent_track_is_decided_without_the_vad(clips, sample):
    lab = SpeechLabeler()  # no setup: the VAD is never loaded
    assert lab.label(sample(clips["silent"])) == {"present": False, "score": 0.0}


def test_syllable_rate_counts_energy_bursts():
    rate = 16000
    t = np.arange(4 * rate) / rate
    carrier = np.sin(2 * np.pi * 800 * t)
    bursts = carrier * (np.sin(2 * np.pi * 4 * t) > 0.3)  # 4 syllable-like bursts a second
    assert 3.5 <= syllable_rate(band_envelope(bursts.astype(np.float32), rate)) <= 4.5
    assert syllable_rate(band_envelope(carrier.astype(np.float32), rate)) < 0.5  # a held note
    assert len(band_envelope(carrier.astype(np.float32), rate)) == pytest.approx(4 / HOP_S, abs=3)


def test_config_is_checked():
    with pytest.raises(ValueError, match="threshold"):
        SpeechLabeler(threshold=1.0)
    with pytest.raises(ValueError, match="min_speech"):
        SpeechLabeler(min_speech=-1)
