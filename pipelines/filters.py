"""Filter stage: duration, frame size and codec limits from settings; outside them -> rejected."""

from __future__ import annotations

from crawler.errors import MediaError
from crawler.items import VideoItem
from pipelines.base import ItemPipeline


class FiltersPipeline(ItemPipeline):
    """Rejects too_short, too_long, too_small and codec_not_allowed videos."""

    stage = "filters"

    def __init__(self, crawler):
        super().__init__(crawler)
        s = self.settings
        self.min_duration = s.getfloat("MEDIA_MIN_DURATION", 0.0)
        self.max_duration = s.getfloat("MEDIA_MAX_DURATION", 0.0)
        self.min_width = s.getint("MEDIA_MIN_WIDTH", 0)
        self.min_height = s.getint("MEDIA_MIN_HEIGHT", 0)
        self.codecs = {c.lower() for c in s.getlist("MEDIA_ALLOWED_CODECS")}
        if self.max_duration and self.min_duration > self.max_duration:
            raise ValueError(f"MEDIA_MIN_DURATION ({self.min_duration}) is above "
                             f"MEDIA_MAX_DURATION ({self.max_duration})")  # fmt: skip

    async def process(self, item: VideoItem) -> str:
        if item.duration is not None:
            if self.min_duration and item.duration < self.min_duration:
                raise MediaError("too_short", f"{item.duration:g}s < {self.min_duration:g}s")
            if self.max_duration and item.duration > self.max_duration:
                raise MediaError("too_long", f"{item.duration:g}s > {self.max_duration:g}s")
        width, height = item.width or 0, item.height or 0
        if item.rotation in (90, -90, 270, -270):
            width, height = height, width
        if (self.min_width and width < self.min_width) or (self.min_height and height < self.min_height):
            raise MediaError("too_small", f"{width}x{height} < {self.min_width}x{self.min_height}")
        if self.codecs and (item.video_codec or "").lower() not in self.codecs:
            raise MediaError("codec_not_allowed", f"{item.video_codec} not in {sorted(self.codecs)}")
        return "passed"
