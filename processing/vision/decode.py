"""Opening a video for decoding, the one safe way: a path or an object URI, single-threaded decode, a pixel cap.

``VideoSource(item.path)`` checks the location once (``no_path``, ``missing_file``,
``empty_file``, ``unreadable``) and opens PyAV containers on it: a local file by name (the fast
path), an object (``s3://``, ``gs://``) as an fsspec file-like that PyAV reads by ranged GETs
as it seeks (``crawler.locations``; configured by the standard ``AWS_*`` / Google variables).
Closing the source closes every container and file it opened.

Decoding is single-threaded on purpose. Sampling and scene search stop mid-stream, and
FFmpeg's frame threading (``thread_type`` AUTO or FRAME) can then hang for ever in codec
teardown (``avcodec_free_context`` joining a decoder thread that waits for more input), most
often in a process with torch loaded: PyAV-Org/PyAV#1849 and #1861. With ``thread_type =
"NONE"`` and one thread there is no decoder thread to wait for. Frames above ``max_pixels``
are refused from the stream's dimensions before anything is decoded (``too_large``).
"""

from __future__ import annotations

from crawler import locations
from crawler.errors import MediaError

# What a container opened on an object's file-like may open besides it: nothing.
REMOTE_OPTIONS = {"protocol_whitelist": "none"}


class DecodeError(MediaError):
    """A video that cannot be sampled; ``code`` is the stable reason recorded on the item."""


class VideoSource:
    """One video by path or URI, checked on creation; ``open()`` gives PyAV containers on it."""

    def __init__(self, location: str | None):
        if not location:
            raise DecodeError("no_path", "item has no file path")
        self.location = str(location)
        self.local = locations.local_file(self.location)
        if self.local is not None:
            if not self.local.is_file():
                raise DecodeError("missing_file", str(self.local))
            size = self.local.stat().st_size
        else:
            try:
                size = locations.size(self.location)
            except MediaError as exc:
                raise DecodeError(exc.code, exc.message) from exc
        if size == 0:
            raise DecodeError("empty_file", self.location)
        self.name = locations.name_of(self.location)
        self._opened: list = []  # containers and file-likes, closed in reverse order

    def open(self, timeout=(10.0, 10.0)):
        """A PyAV input container (``av.error.FFmpegError`` from PyAV; ``DecodeError`` when unreadable)."""
        import av

        if self.local is not None:
            container = av.open(str(self.local), timeout=timeout)
        else:
            try:
                fh = locations.open_input(self.location)
            except MediaError as exc:
                raise DecodeError(exc.code, exc.message) from exc
            self._opened.append(fh)
            container = av.open(fh, timeout=timeout, options=REMOTE_OPTIONS)
        self._opened.append(container)
        return container

    def close(self) -> None:
        while self._opened:
            try:
                self._opened.pop().close()
            except Exception:  # noqa: BLE001 - closing what may be closed already
                pass

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video_stream(container, max_pixels: int):
    """The first video stream, set up to decode on this thread only; ``too_large`` when its
    frames have more than ``max_pixels`` pixels, ``no_video_stream`` when there is none."""
    if not container.streams.video:
        raise DecodeError("no_video_stream", "no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = ctx.width or 0, ctx.height or 0
    if width * height > max_pixels:
        raise DecodeError("too_large", f"{width}x{height} frames, over MEDIA_MAX_PIXELS={max_pixels}")
    ctx.thread_type = "NONE"
    ctx.thread_count = 1
    return stream
