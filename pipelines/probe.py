"""Probe stage: container, duration, size, codecs, rates, rotation and frame count of each file.

PyAV in-process, measured against ``ffprobe -print_format json`` as a subprocess on the 12
clips of tests/data and bench/results/media_clips (medians of 7 runs, 2-core machine under
load): PyAV 3.0 ms median (1.3-37 ms; it also decodes the first frame) vs ffprobe 82 ms
(78-94 ms, mostly process start). ``ffprobe`` stays as a second opinion for files PyAV's
FFmpeg cannot open, so every file the system FFmpeg reads still passes.
Only video demuxers are used (``pipelines.media.VIDEO_DEMUXERS``: images, text, playlists and
scripts are not videos), and frames above ``MEDIA_MAX_PIXELS`` are refused before a decode.
Not a video, no video stream, an unknown codec, nothing decodable or frames too large ->
rejected; a cut-off MP4, a time cap -> failed (``truncated``, ``timeout``).
It runs in the crawl's media workers (pipelines/pool.py) as ``probe_and_phash``: the perceptual
hash of the phash stage is computed on the same open file (one open and one first-frame decode
fewer per video) and kept in ``item.phash``.
"""

from __future__ import annotations

from crawler.errors import MediaError
from crawler.items import VideoItem
from pipelines.base import ItemPipeline
from pipelines.media import probe_and_phash
from pipelines.pool import MediaPool


class ProbePipeline(ItemPipeline):
    """Fills the probe fields of VideoItem from the downloaded file."""

    stage = "probe"

    def __init__(self, crawler):
        super().__init__(crawler)
        self.max_pixels = self.settings.getint("MEDIA_MAX_PIXELS", 7680 * 4320)
        if self.max_pixels < 0:
            raise ValueError(f"MEDIA_MAX_PIXELS must be >= 0 (0: no cap), got {self.max_pixels}")
        MediaPool.of(crawler)  # made now: its workers start when the spider opens (pipelines.pool.prestart)

    async def process(self, item: VideoItem) -> str:
        if not item.path:
            raise MediaError("missing_file", "no path after download")
        # the perceptual hash on the same open file (the phash stage keeps it, or says why there is none)
        found = await self.in_process(probe_and_phash, self.media_location(item), self.media_timeout,
                                      self.max_pixels, timeout=2 * self.media_timeout)  # fmt: skip
        info, item.phash = found["probe"], found["phash"] or item.phash
        via = info.pop("probed_by", "pyav")
        for name, value in info.items():
            setattr(item, name, value)
        return "ok" if via == "pyav" else f"ok_{via}"
