"""Media functions without Scrapy: sha256, probe (PyAV, ffprobe fallback), perceptual hash.

The workers and the benchmarks import this module; nothing here imports Scrapy or Twisted.
Every function takes a location (``crawler.locations``): a local path, or an object URI
(``s3://``, ``gs://``) that PyAV reads as a file-like by ranged reads (probe and the pHash's
keyframes touch a fraction of a large file; sha256 streams it whole). A held local copy of an
object (a download just uploaded) is read instead of the object. Bad media raises
:class:`crawler.errors.MediaError` with a stable reason code (``not_a_video``,
``no_video_stream``, ``undecodable``, ``timeout``...); the pipelines turn that into
``item.reject``/``item.fail``.

Perceptual hash (``phash``): 64 bits, 16 hex chars, compared by Hamming distance, with
videohash's semantics (a collage of frames spread over the whole video, hashed as one
image) but built from keyframes only, so it costs a demux pass plus a handful of
keyframe decodes instead of decoding every frame:

1. Keyframes as 16x16 grey thumbnails (area-averaged by swscale); ``GRID`` sample times
   spread evenly over the duration, each the linear blend in time of the keyframes before
   and after it (on the test clips this roughly halves the drift between two encodes whose
   keyframes fall at different times, against taking the last keyframe).
2. The grid is averaged into 4 time slots (quarters), laid out as a 2x2 collage (32x32).
3. DCT-II of the collage; the 8x8 lowest frequencies compared with their median -> 64 bits
   (the classic image pHash).

Cost (640x360 H.264, a keyframe a second): ~11 keyframe decodes per 10 s clip are ~80% of
``probe_and_phash``; MP4/MOV/Matroska are opened without FFmpeg's stream-info decode
(``FAST_OPEN_OPTIONS``) and the probe's first frame is the hash's first keyframe.

Short files are read sequentially (demux every packet, decode keyframes only); long ones
seek to each grid time instead (the keyframe at or before it) without reading the file. A
file whose keyframes leave half its duration uncovered (short clips with one or two
keyframes) has its frames decoded instead (non-reference frames skipped, capped).
Measured on tests/data: a -crf 35 re-encode or a half-size copy lands 0-2 bits from its
original (10 for the 30 s globe clip whose source has a keyframe every 3 s and the copy
every 8.3 s); different clips 18-42 bits apart. Limit: when two encodes place keyframes
far apart in time on changing content, their hashes drift (a GOP-30 re-encode of
bikes.mp4: 16 bits), like any keyframe or frame-sampling hash (videohash puts a clip
trimmed by 2 s 25/64 bits from its original); decoding every frame would fix it at ~10x
the cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING

from crawler import locations
from crawler.errors import MediaError  # raised by every function here
from crawler.media_types import sniff

if TYPE_CHECKING:
    import numpy as np  # imported where used: the crawl process, which only calls the workers, needs none

GRID = 16  # sample times over the duration
SLOTS = 4  # collage cells (2x2), GRID // SLOTS samples averaged per cell
THUMB = 16  # thumbnail side in pixels
SEEK_MODE_BYTES = 64 * 1024 * 1024  # larger files: seek per grid time instead of demuxing all
SEEK_MODE_SECONDS = 600.0
FALLBACK_FRAMES = 400  # sparse-keyframe files: decode at most this many frames instead
MAX_KEYFRAMES = 4000  # sequential pass: decode at most this many keyframes
PROBE_DECODE_PACKETS = 300  # packets tried to get the first frame before "undecodable"
MAX_PIXELS = 7680 * 4320  # frames above this are refused before any decode (MEDIA_MAX_PIXELS)
# The FFmpeg demuxers a video may be read with: containers and raw video streams. Everything
# else is not_a_video before FFmpeg reads a header: images (png_pipe, gif, image2...), text
# (tty), and the demuxers that open other files or sockets from a file's content (hls,
# concat, sdp, dash...), so a hostile "video" cannot make the probe read /etc/... or fetch
# from an internal host. Names as FFmpeg's; "mov" and "matroska" match "mov,mp4,..." and
# "matroska,webm".
VIDEO_DEMUXERS = (
    "mov", "matroska", "avi", "flv", "live_flv", "ogg", "asf", "mpeg", "mpegts", "mpegtsraw",
    "mpegvideo", "m4v", "h264", "hevc", "vvc", "h261", "h263", "vc1", "dirac", "cavsvideo",
    "avs2", "avs3", "nut", "mxf", "dv", "gxf", "wtv", "ivf", "obu", "av1", "rm", "yuv4mpegpipe",
    "mjpeg", "mjpeg_2000", "swf", "bink", "smk", "nsv", "flic", "roq", "thp", "vmd", "psxstr",
    "vivo", "lxf", "r3d", "smjpeg", "cdxl", "dhav", "mtv", "nuv",
)  # fmt: skip
# FFmpeg's open limits (its defaults, stated): probing reads at most 5 MB / 5 s of stream; only
# the listed demuxers, and no protocol but the local file itself.
OPEN_OPTIONS = {
    "probesize": str(5 * 1000 * 1000), "analyzeduration": str(5 * 1000 * 1000),
    "format_whitelist": ",".join(VIDEO_DEMUXERS), "protocol_whitelist": "file",
}  # fmt: skip
_OPEN_OPTIONS = OPEN_OPTIONS  # the name used before
# An object is read through a file-like: no protocol at all may be opened from its content.
REMOTE_OPEN_OPTIONS = dict(OPEN_OPTIONS, protocol_whitelist="none")
# Containers whose headers carry every codec parameter the probe reports (sizes, rates, codecs,
# audio layout): opened without FFmpeg's find_stream_info decoding frames (it decodes the first
# video frame, and up to 7 for H.264 with B-frames, ~2-3 ms a file; the probe decodes the first
# frame itself) and reading a packet or two per stream instead of up to 5 s of them. The same
# fields on every file of tests/data, the benchmarks' clips and mp4/mov/mkv/webm/fragmented/
# HEVC/AV1 made with ffmpeg (Matroska's start_time is left unset: 0, the seek code's default).
FAST_OPEN_FAMILIES = ("isobmff", "quicktime", "matroska")
FAST_OPEN_OPTIONS = {"skip_frame": "all", "analyzeduration": "1"}


# --- sha256 ---------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike, chunk_size: int = 1024 * 1024) -> str:
    """Hex sha256 of a file, streamed in ``chunk_size`` pieces (hashlib frees the GIL)."""
    digest = hashlib.sha256()
    with locations.open_input(path, block_size=max(chunk_size, locations.BLOCK_BYTES)) as fh:
        try:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
        except (OSError, MediaError):
            raise
        except Exception as exc:  # noqa: BLE001 - an object store's error mid-read
            raise MediaError("unreadable", f"{type(exc).__name__}: {exc}"[:300]) from exc
    return digest.hexdigest()


# --- probe ----------------------------------------------------------------------------------
def _rate(value) -> float | None:
    try:
        rate = float(Fraction(value)) if value is not None else None
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return round(rate, 3) if rate else None


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _check_file(path: str | os.PathLike) -> int:
    return _check_head(path)[0]


def _check_head(path: str | os.PathLike) -> tuple[int, str | None]:
    """Size and container family (``crawler.media_types.sniff`` of the first bytes) of a file worth opening."""
    size = locations.size(path)  # MediaError: missing_file, unreadable
    if size == 0:
        raise MediaError("empty_file", "0 bytes")
    return size, _check_boxes(path, size)


_TOP_LEVEL_BOXES = frozenset(
    b"ftyp styp moov mdat moof mfra free skip wide uuid meta pdin sidx ssix emsg prft junk pnot".split()
)


def _check_boxes(path: str | os.PathLike, size: int, max_boxes: int = 64) -> str | None:
    """An ISO-BMFF (MP4/MOV) file whose top-level boxes run past its end is ``truncated``.

    Reads 16 bytes per top-level box (a handful of seeks) and stops at the first header that is
    not a known top-level box (garbage: FFmpeg's open judges it); files of other kinds pass.
    Returns the container family the first 12 bytes announce (``sniff``), or None.
    """
    try:
        with locations.open_input(path, block_size=64 * 1024) as fh:
            head = fh.read(12)
            family = sniff(head)
            if len(head) < 12 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
                return family
            offset = 0
            for _ in range(max_boxes):
                if offset >= size:
                    return family
                fh.seek(offset)
                header = fh.read(16)
                if len(header) < 8:
                    raise MediaError("truncated", f"box header cut at byte {offset} of {size}")
                length = int.from_bytes(header[:4], "big")
                if length == 1:
                    if len(header) < 16:
                        raise MediaError("truncated", f"box header cut at byte {offset} of {size}")
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:  # "to the end of the file"
                    return family
                if length < 8 or header[4:8] not in _TOP_LEVEL_BOXES:
                    return family  # not a box structure: FFmpeg's open decides
                if offset + length > size:
                    kind = header[4:8].decode("latin-1")
                    raise MediaError("truncated", f"'{kind}' box ends at {offset + length}, file has {size} bytes")
                offset += length
            return family
    except MediaError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, or an object store's error
        raise MediaError("unreadable", str(exc)) from exc


def _check_pixels(width: int | None, height: int | None, max_pixels: int | None) -> None:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if limit and width and height and width * height > limit:
        raise MediaError("too_large", f"{width}x{height} frames > MEDIA_MAX_PIXELS={limit}")


@contextmanager
def _open(path, timeout: float | None, family: str | None = None):
    """The PyAV container of a local file (by name) or of an object (a file-like, closed after).

    ``family`` (``_check_head``'s): one of ``FAST_OPEN_FAMILIES`` is opened without decoding.
    """
    import av

    local = locations.readable(path)
    fh = locations.open_input(path) if local is None else None
    options = OPEN_OPTIONS if fh is None else REMOTE_OPEN_OPTIONS
    if family in FAST_OPEN_FAMILIES:
        options = dict(options, **FAST_OPEN_OPTIONS)
    try:
        try:
            container = av.open(str(local) if fh is None else fh, options=options, timeout=timeout)
        except av.error.ExitError as exc:  # interrupted by the timeout callback
            raise MediaError("timeout", str(exc)) from exc
        except av.error.ArgumentError as exc:  # what FFmpeg answers for a demuxer off the list
            raise MediaError("not_a_video", f"no video demuxer reads it ({exc})") from exc
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise MediaError("not_a_video", str(exc)) from exc
        with container:
            yield container
    finally:
        if fh is not None:
            fh.close()


def _deadline_check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise MediaError("timeout", "media step took too long")


def probe_pyav(path: str | os.PathLike, timeout: float | None = None, max_pixels: int | None = None) -> dict:
    """Probe in-process with PyAV; decodes the first video frame (rotation, decodability).

    Frames above ``max_pixels`` (default ``MAX_PIXELS``) are ``too_large`` before any decode.
    """
    _, family = _check_head(path)
    deadline = time.monotonic() + timeout if timeout else None
    with _open(path, timeout, family) as container:
        return _probe_container(container, deadline, max_pixels)[0]


def _probe_container(container, deadline: float | None, max_pixels: int | None,
                     thumb: bool = False) -> tuple[dict, tuple[float, np.ndarray] | None]:  # fmt: skip
    """``probe_pyav`` on an open container (its decoder single-threaded, left after the first frame).

    With ``thumb``, also the first frame as the perceptual hash takes it, ``(seconds, thumbnail)``,
    when it came from the stream's first packet, a keyframe (what the hash decodes first, the
    same way): the hash goes on from the next packet. Else None (the hash rewinds).
    """
    import av

    if not container.streams.video:
        raise MediaError("no_video_stream", f"streams: {[s.type for s in container.streams]}")
    video = container.streams.video[0]
    audio = container.streams.audio[0] if container.streams.audio else None
    ctx = video.codec_context
    if ctx is None:  # FFmpeg has no decoder for it (an unknown tag, a codec left out)
        raise MediaError("unsupported_codec", f"no decoder for video tag {_codec_tag(video)!r}")
    _check_pixels(ctx.width, ctx.height, max_pixels)
    duration = None
    if container.duration:
        duration = container.duration / 1_000_000
    elif video.duration and video.time_base:
        duration = float(video.duration * video.time_base)
    info = {
        "container": container.format.name,
        "duration": round(duration, 3) if duration else None,
        "width": ctx.width or None,
        "height": ctx.height or None,
        "fps": _rate(video.average_rate or video.guessed_rate),
        "video_codec": ctx.name,
        "audio_codec": audio.codec_context.name if audio and audio.codec_context else None,
        "bit_rate": _int(container.bit_rate),
        "video_bit_rate": _int(video.bit_rate),
        "audio_bit_rate": _int(audio.bit_rate) if audio else None,
        "audio_channels": _audio_channels(audio),
        "audio_sample_rate": _int(audio.codec_context.sample_rate) if audio and audio.codec_context else None,
        "rotation": None,
        "frame_count": _int(video.frames),
    }
    frame = first = None
    try:
        video.thread_type = "NONE"
        ctx.thread_count = 1  # (no threads with NONE; set before the codec opens, as phash needs)
        for count, packet in enumerate(container.demux(video)):
            _deadline_check(deadline)
            decoded = list(ctx.decode(packet))
            if not decoded and packet.is_keyframe and packet.size:
                decoded = list(ctx.decode(None))  # drain the B-frame delay: 1 packet, not 4
                ctx.flush_buffers()
            if decoded:
                frame = decoded[0]
                if thumb and count == 0 and packet.is_keyframe and packet.size and len(decoded) == 1:
                    _check_pixels(frame.width, frame.height, max_pixels)
                    first = (_keyframe_time(frame, video, 0), _thumb(frame))
                break
            if count >= PROBE_DECODE_PACKETS:
                break
    except av.error.ExitError as exc:
        raise MediaError("timeout", str(exc)) from exc
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError("undecodable", str(exc)) from exc
    if frame is None:
        raise MediaError("undecodable", "no video frame could be decoded")
    _check_pixels(frame.width, frame.height, max_pixels)
    info["width"] = info["width"] or frame.width
    info["height"] = info["height"] or frame.height
    info["rotation"] = int(getattr(frame, "rotation", 0) or 0)
    return info, first


def _codec_tag(stream) -> str:
    try:
        return str(stream.codec_tag)
    except Exception:  # noqa: BLE001 - only a message
        return "?"


def _audio_channels(audio) -> int | None:
    if audio is None or audio.codec_context is None:
        return None
    ctx = audio.codec_context
    layout = getattr(ctx, "layout", None)
    return _int(getattr(layout, "nb_channels", None) or getattr(ctx, "channels", None))


def probe_ffprobe(path: str | os.PathLike, timeout: float | None = None, max_pixels: int | None = None) -> dict:
    """Probe with the ``ffprobe`` executable in a subprocess (the baseline, and the fallback).

    It reads local files only (an object's held copy included): ``unreadable`` for an object.
    """
    _check_file(path)
    local = locations.readable(path)
    if local is None:
        raise MediaError("unreadable", "ffprobe reads local files only")
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
           "-format_whitelist", OPEN_OPTIONS["format_whitelist"], "-protocol_whitelist", "file",
           "--", os.fsdecode(os.path.abspath(local))]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError("timeout", f"ffprobe ran over {timeout}s") from exc
    try:
        data = json.loads(done.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise MediaError("probe_error", f"ffprobe printed bad JSON: {exc}") from exc
    if done.returncode != 0 or "format" not in data:
        raise MediaError("not_a_video", done.stderr.decode(errors="replace").strip()[:300])
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)  # fmt: skip
    if video is None:
        raise MediaError("no_video_stream", f"streams: {[s.get('codec_type') for s in streams]}")
    if video.get("codec_name") in (None, "", "none"):
        raise MediaError("unsupported_codec", f"no decoder for video tag {video.get('codec_tag_string')!r}")
    _check_pixels(_int(video.get("width")), _int(video.get("height")), max_pixels)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), {})
    fmt = data["format"]
    duration = fmt.get("duration") or video.get("duration")
    rotation = video.get("tags", {}).get("rotate")
    for side in video.get("side_data_list", []):
        rotation = side.get("rotation", rotation)
    return {
        "container": fmt.get("format_name"),
        "duration": round(float(duration), 3) if duration else None,
        "width": _int(video.get("width")),
        "height": _int(video.get("height")),
        "fps": _rate(video.get("avg_frame_rate") or video.get("r_frame_rate")),
        "video_codec": video.get("codec_name"),
        "audio_codec": audio.get("codec_name"),
        "bit_rate": _int(fmt.get("bit_rate")),
        "video_bit_rate": _int(video.get("bit_rate")),
        "audio_bit_rate": _int(audio.get("bit_rate")),
        "audio_channels": _int(audio.get("channels")),
        "audio_sample_rate": _int(audio.get("sample_rate")),
        "rotation": int(float(rotation)) if rotation is not None else 0,
        "frame_count": _int(video.get("nb_frames")),
    }


def probe(path: str | os.PathLike, timeout: float | None = None, max_pixels: int | None = None) -> dict:
    """Metadata of a video file as VideoItem field names; raises :class:`MediaError`.

    PyAV in-process first (~1-5 ms, no process start); when PyAV's FFmpeg cannot open the
    file, the system ``ffprobe`` gets a second look so that every file FFmpeg reads passes
    (with the same demuxer and protocol lists). An object without a local copy gets PyAV's
    answer only (ffprobe would need the whole object on disk).
    """
    try:
        return probe_pyav(path, timeout, max_pixels)
    except MediaError as exc:
        if exc.code != "not_a_video" or locations.readable(path) is None:
            raise
        first = exc
    try:
        info = probe_ffprobe(path, timeout, max_pixels)
    except MediaError as exc:
        if exc.code == "not_a_video":
            raise first from None
        raise
    info["probed_by"] = "ffprobe"
    return info


# --- perceptual hash ------------------------------------------------------------------------
@cache
def _dct_matrix(n: int) -> np.ndarray:
    import numpy as np

    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_local = threading.local()  # one swscale context per thread (MEDIA_PROCESSES=0 runs media in threads)


def _thumb(frame) -> np.ndarray:
    """The frame as a THUMB x THUMB grey float image (swscale, area-averaged).

    One reformatter per thread, reused: ``frame.reformat`` makes a new swscale context (and its
    slice threads) for every frame, ~0.1-0.2 ms each; the same pixels.
    """
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _local.reformatter = VideoReformatter()
    import numpy as np

    img = reformatter.reformat(frame, width=THUMB, height=THUMB, format="gray", interpolation="AREA")
    return img.to_ndarray().astype(np.float32)


def _seconds(frame_or_packet, time_base) -> float | None:
    pts = frame_or_packet.pts if frame_or_packet.pts is not None else frame_or_packet.dts
    return float(pts * time_base) if pts is not None and time_base else None


def _keyframe_time(frame, video, index: int) -> float:
    t = _seconds(frame, video.time_base)
    return t if t is not None else float(index)


def _keyframes_sequential(container, video, deadline, first=None) -> list[tuple[float, np.ndarray]]:
    """Every keyframe's (time, thumbnail), demuxing the whole file, decoding keyframes only.

    Keyframe packets go to the decoder alone; a decoder that holds frames back (B-frame
    delay) is drained after each one, so every keyframe comes out. ``first``: the first
    keyframe's, already decoded (the demuxer is past it).
    """
    frames: list[tuple[float, np.ndarray]] = [first] if first is not None else []
    ctx = video.codec_context
    for packet in container.demux(video):
        if not packet.is_keyframe or packet.size == 0:
            continue
        _deadline_check(deadline)
        decoded = list(ctx.decode(packet))
        if not decoded:
            decoded = list(ctx.decode(None))
            ctx.flush_buffers()
        for frame in decoded:
            frames.append((_keyframe_time(frame, video, len(frames)), _thumb(frame)))
        if len(frames) >= MAX_KEYFRAMES:
            break
    return frames


def _frames_all(container, video, deadline, max_frames: int) -> list[tuple[float, np.ndarray]]:
    """Decoded frames from the start (non-reference frames skipped), at most ``max_frames``.

    Used when keyframes leave more than half the duration uncovered (short clips with one
    or two keyframes): their sample-and-hold grid would be one or two images.
    """
    frames: list[tuple[float, np.ndarray]] = []
    container.seek(0, stream=video, backward=True, any_frame=False)
    ctx = video.codec_context
    ctx.flush_buffers()
    ctx.skip_frame = "NONREF"
    for frame in container.decode(video):
        _deadline_check(deadline)
        t = _seconds(frame, video.time_base)
        frames.append((t if t is not None else float(len(frames)), _thumb(frame)))
        if len(frames) >= max_frames:
            break
    return frames


def _keyframes_seeking(container, video, times, deadline) -> list[tuple[float, np.ndarray]]:
    """The keyframe at or before each of ``times`` (seconds), by seeking (long files)."""
    frames: list[tuple[float, np.ndarray]] = []
    base = video.time_base
    start = float(video.start_time * base) if video.start_time is not None else 0.0
    for t in times:
        _deadline_check(deadline)
        container.seek(int((t + start) / base), stream=video, backward=True, any_frame=False)
        video.codec_context.flush_buffers()
        for packet in container.demux(video):
            frame = next(iter(packet.decode()), None)
            if frame is not None:
                ft = _seconds(frame, base)
                frames.append(((ft - start) if ft is not None else t, _thumb(frame)))
                break
    return frames


def _max_gap(frames: list[tuple[float, np.ndarray]], duration: float) -> float:
    times = sorted(t for t, _ in frames) + [duration]
    return max(b - a for a, b in zip(times, times[1:])) if len(times) > 1 else duration


def phash(path: str | os.PathLike, timeout: float | None = None, max_pixels: int | None = None) -> str:
    """64-bit perceptual hash of a video as 16 hex chars; raises :class:`MediaError`."""
    size, family = _check_head(path)
    deadline = time.monotonic() + timeout if timeout else None
    with _open(path, timeout, family) as container:
        return _phash_container(container, size, deadline, max_pixels)


def _phash_container(container, size: int, deadline: float | None, max_pixels: int | None, first=None) -> str:
    """``phash`` on an open container whose demuxing and decoding start from the beginning, or,
    with ``first`` (``_probe_container``'s), go on after the first keyframe."""
    import av

    if not container.streams.video:
        raise MediaError("no_video_stream", "no video stream")
    video = container.streams.video[0]
    if video.codec_context is None:
        raise MediaError("unsupported_codec", f"no decoder for video tag {_codec_tag(video)!r}")
    _check_pixels(video.codec_context.width, video.codec_context.height, max_pixels)
    if not video.codec_context.is_open:  # (neither can change once the codec is open: the probe set both)
        video.thread_type = "NONE"
        video.codec_context.thread_count = 1
    duration = container.duration / 1_000_000 if container.duration else None
    try:
        if duration and (size > SEEK_MODE_BYTES or duration > SEEK_MODE_SECONDS):
            times = [(g + 0.5) * duration / GRID for g in range(GRID)]
            frames = _keyframes_seeking(container, video, times, deadline)
        else:
            frames = _keyframes_sequential(container, video, deadline, first)
            if duration and duration > 1.0 and _max_gap(frames, duration) > duration / 2:
                frames = _frames_all(container, video, deadline, FALLBACK_FRAMES) or frames
    except av.error.ExitError as exc:
        raise MediaError("timeout", str(exc)) from exc
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError("undecodable", str(exc)) from exc
    if not frames:
        raise MediaError("undecodable", "no keyframe could be decoded")
    return _hash_frames(frames, duration)


def probe_and_phash(path: str | os.PathLike, timeout: float | None = None, max_pixels: int | None = None) -> dict:
    """``{"probe": probe(...), "phash": phash(...) or None}`` with one open of the file.

    The probe's verdict is raised as ``probe`` raises it. The hash is computed on the same
    container (the same hash as ``phash``): from the probe's first frame on when that was the
    first keyframe (the usual case: no rewind, one open and two first-frame decodes fewer than
    the two calls), else rewound; ``None`` when it cannot be (the phash stage then runs
    ``phash`` and says why). Each step has its own ``timeout``.
    """
    size, family = _check_head(path)
    deadline = time.monotonic() + timeout if timeout else None
    try:
        with _open(path, timeout, family) as container:
            info, first = _probe_container(container, deadline, max_pixels, thumb=True)
            try:
                if first is None:  # rewind: the hash starts from the first keyframe
                    container.seek(0, backward=True, any_frame=False, stream=container.streams.video[0])
                    container.streams.video[0].codec_context.flush_buffers()
                deadline = time.monotonic() + timeout if timeout else None
                digest = _phash_container(container, size, deadline, max_pixels, first)
            except Exception:  # noqa: BLE001 - not seekable, or not hashable: the phash stage decides
                digest = None
            return {"probe": info, "phash": digest}
    except MediaError as exc:
        if exc.code != "not_a_video":
            raise
    return {"probe": probe(path, timeout, max_pixels), "phash": None}  # ffprobe's second look


def _hash_frames(frames: list[tuple[float, np.ndarray]], duration: float | None) -> str:
    import numpy as np

    frames.sort(key=lambda f: f[0])
    t0 = frames[0][0]
    times = np.array([t - t0 for t, _ in frames])
    span = duration or (times[-1] if len(times) > 1 else 1.0) or 1.0
    grid_t = (np.arange(GRID) + 0.5) * span / GRID
    # linear interpolation in time between the neighbouring decoded frames (keyframes):
    # closer to the true frame at each grid time than holding the last keyframe
    thumbs = np.stack([f[1] for f in frames])
    right = np.clip(np.searchsorted(times, grid_t, side="right"), 1, max(len(frames) - 1, 1))
    left = right - 1
    if len(frames) == 1:
        stack = np.repeat(thumbs[:1], GRID, axis=0)
    else:
        gap = np.maximum(times[right] - times[left], 1e-9)
        w = np.clip((grid_t - times[left]) / gap, 0.0, 1.0)[:, None, None]
        stack = (1 - w) * thumbs[left] + w * thumbs[right]  # (GRID, THUMB, THUMB)
    cells = stack.reshape(SLOTS, GRID // SLOTS, THUMB, THUMB).mean(axis=1)
    collage = np.block([[cells[0], cells[1]], [cells[2], cells[3]]])  # (32, 32)
    dct = _dct_matrix(2 * THUMB)
    coeffs = (dct @ collage @ dct.T)[:8, :8].ravel()
    bits = coeffs > np.median(coeffs)
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def warm() -> None:
    """Import what the functions here use (FFmpeg's libraries, numpy): a media worker's start."""
    import av.video.reformatter  # noqa: F401
    import numpy  # noqa: F401

    _dct_matrix(2 * THUMB)


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
