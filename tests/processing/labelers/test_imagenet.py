"""ImageNet tags: no tag below its threshold (a plain screen gets none), real tags on a real clip."""

import pytest

from processing.labelers.imagenet import ImagenetLabeler


@pytest.fixture(scope="module")
def labeler():
    lab = ImagenetLabeler()
    lab.setup()
    return lab


def test_a_plain_screen_gets_no_tag(labeler, clips, sample):
    work = sample(clips["blue"])
    assert labeler.label(work) == {"tags": []}  # its best class (jellyfish) scores ~0.02
    low = ImagenetLabeler(min_score=0.01)
    low.setup()
    assert low.label(work)["tags"], "below the default threshold there are classes: the rule removed them"


def test_every_tag_is_at_or_above_its_threshold(sample, media):
    work = sample(media["carphone_pristine"])
    for min_score in (0.1, 0.3, 0.5):
        lab = ImagenetLabeler(min_score=min_score)
        lab.setup()
        tags = lab.label(work)["tags"]
        assert all(t["score"] >= min_score for t in tags)
        if min_score == 0.1:
            assert {"bow tie", "Windsor tie", "suit"} & {t["name"] for t in tags}  # a man in a suit and tie


def test_config_is_checked():
    with pytest.raises(ValueError, match="min_score"):
        ImagenetLabeler(min_score=0)
    with pytest.raises(ValueError, match="top_k"):
        ImagenetLabeler(top_k=0)
