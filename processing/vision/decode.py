"""Opening a video for decoding, the one safe way: local file checks, single-threaded decode, a pixel cap.

Decoding is single-threaded on purpose. Sampling and scene search stop mid-stream, and
FFmpeg's frame threading (``thread_type`` AUTO or FRAME) can then hang for ever in codec
teardown (``avcodec_free_context`` joining a decoder thread that waits for more input), most
often in a process with torch loaded: PyAV-Org/PyAV#1849 and #1861. With ``thread_type =
"NONE"`` and one thread there is no decoder thread to wait for. Frames above ``max_pixels``
are refused from the stream's dimensions before anything is decoded (``too_large``).
"""

from __future__ import annotations

from pathlib import Path

from crawler.errors import MediaError


class DecodeError(MediaError):
    """A video that cannot be sampled; ``code`` is the stable reason recorded on the item."""


def local_path(item_path: str | None) -> Path:
    if not item_path:
        raise DecodeError("no_path", "item has no file path")
    if item_path.startswith("file://"):
        item_path = item_path[len("file://") :]
    if "://" in item_path:
        raise DecodeError("not_local", f"workers read local files only, got {item_path!r}")
    path = Path(item_path)
    if not path.is_file():
        raise DecodeError("missing_file", str(path))
    if path.stat().st_size == 0:
        raise DecodeError("empty_file", str(path))
    return path


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
