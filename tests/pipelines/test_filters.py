"""FiltersPipeline in-process: duration, size and codec limits reject with their reasons."""

import pytest

from crawler.items import VideoItem
from pipelines.filters import FiltersPipeline
from tests.pipelines.conftest import project_crawler, run_item


def test_filters_reject_with_reasons(key_prefix):
    crawler = project_crawler(MEDIA_MIN_DURATION=2, MEDIA_MAX_DURATION=60, MEDIA_MIN_WIDTH=100,
                              MEDIA_MIN_HEIGHT=200, MEDIA_ALLOWED_CODECS=["h264", "vp9"])  # fmt: skip
    pipeline = FiltersPipeline.from_crawler(crawler)

    def verdict(**probe):
        fields = {"duration": 10.0, "width": 640, "height": 360, "video_codec": "h264", **probe}
        item = run_item(pipeline, VideoItem(url="http://x/v.mp4", source="t", **fields))
        return item.status, item.errors.get("filters", "").split(":")[0]

    assert verdict() == ("new", "")
    assert verdict(duration=1.0) == ("rejected", "too_short")
    assert verdict(duration=61.0) == ("rejected", "too_long")
    assert verdict(width=90) == ("rejected", "too_small")
    assert verdict(video_codec="mpeg4") == ("rejected", "codec_not_allowed")
    assert verdict(width=360, height=150) == ("rejected", "too_small")
    assert verdict(width=360, height=150, rotation=90) == ("new", "")  # displayed 150x360
    assert crawler.stats.get_value("pipelines/filters/too_long") == 1
    decided = VideoItem(url="http://x/d.mp4", source="t", duration=0.1, status="failed")
    assert run_item(pipeline, decided).errors == {}  # decided items are skipped


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="MEDIA_MIN_DURATION"):
        FiltersPipeline.from_crawler(project_crawler(MEDIA_MIN_DURATION=10, MEDIA_MAX_DURATION=5))
