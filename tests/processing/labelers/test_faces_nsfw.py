"""Faces and NSFW from one NudeNet pass: a real face is found, a cartoon and a plain screen are not."""

import pytest

from processing.labelers.faces import FacesLabeler
from processing.labelers.nsfw import NsfwLabeler


@pytest.fixture(scope="module")
def pair():
    faces, nsfw = FacesLabeler(), NsfwLabeler()
    faces.setup()
    nsfw.setup()
    assert faces.detector is nsfw.detector  # one model per process
    return faces, nsfw


def test_a_real_face_is_found(pair, sample, media):
    faces, _ = pair
    out = faces.label(sample(media["carphone_pristine"]))
    assert out["present"] is True and out["score"] >= 2 / 3
    assert out["tags"] == [{"name": "face", "score": out["score"]}]


@pytest.mark.parametrize("name", ["bigbuckbunny", "bikes"])
def test_no_face_on_a_cartoon_or_a_street_background(pair, sample, media, name):
    faces, _ = pair
    out = faces.label(sample(media[name]))  # OpenCV's Haar cascade found the bunny's face and a pole
    assert out["present"] is False and out["tags"] == []


def test_nsfw_needs_two_frames_and_shares_the_pass_with_faces(pair, sample, media, monkeypatch):
    faces, nsfw = pair
    work = sample(media["bigbuckbunny"])
    runs = []
    original = type(nsfw.detector).class_scores
    monkeypatch.setattr(type(nsfw.detector), "class_scores",
                        lambda self, frames: runs.append(len(frames)) or original(self, frames))  # fmt: skip
    out = nsfw.label(work)
    faces.label(work)
    assert runs == [3]  # one detector run over 3 frames for both labelers
    assert out["present"] is False and out["score"] < nsfw.min_score
    one = NsfwLabeler(min_frames=1)
    one.setup()
    assert one.label(work)["score"] >= out["score"]  # a single frame's score is the max, never lower
    assert all(d["score"] >= 0.25 for d in out["detections"])


def test_a_plain_screen_has_nothing(pair, clips, sample):
    faces, nsfw = pair
    work = sample(clips["blue"])
    assert faces.label(work)["present"] is False
    out = nsfw.label(work)
    assert out["present"] is False and out["score"] < 0.1


def test_config_is_checked():
    with pytest.raises(ValueError, match="min_frames"):
        FacesLabeler(min_frames=0)
    with pytest.raises(ValueError, match="min_score"):
        FacesLabeler(min_score=0)
    with pytest.raises(ValueError, match="min_score"):
        NsfwLabeler(min_score=1.5)
