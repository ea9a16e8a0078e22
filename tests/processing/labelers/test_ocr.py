"""OCR: burnt-in text is read at the frames' own size; a lone letter-like shape is not text."""

import pytest

from processing.labelers.ocr import OcrLabeler


@pytest.fixture(scope="module")
def labeler():
    lab = OcrLabeler()
    lab.setup()
    return lab


def test_burnt_in_text_is_read(labeler, clips, sample):
    out = labeler.label(sample(clips["title"]))
    assert out["present"] is True and out["text"].upper() == "OPEN SOURCE VIDEO"
    assert out["score"] >= 0.6


def test_a_plain_screen_has_no_text(labeler, clips, sample):
    assert labeler.label(sample(clips["blue"])) == {"text": "", "present": False, "score": 0.0}


def test_a_single_character_is_not_text_unless_asked(labeler, clips, sample):
    work = sample(clips["big_o"])
    assert labeler.label(work)["present"] is False
    one = OcrLabeler(min_chars=1)
    one.setup()
    assert one.label(work)["text"].strip().upper() in ("O", "0")


def test_the_detector_sees_the_frames_at_their_own_size(labeler):
    det = labeler.engine.cfg.Det
    assert (det.limit_side_len, det.limit_type) == (224, "min") and labeler.engine.use_cls is False


def test_config_is_checked():
    with pytest.raises(ValueError, match="det_side"):
        OcrLabeler(det_side=8)
    with pytest.raises(ValueError, match="min_chars"):
        OcrLabeler(min_chars=0)
