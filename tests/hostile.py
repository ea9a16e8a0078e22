"""Hostile input for the crawl: bad files (and good clips under hostile names), each with the record it must end in.

``build(folder, internal=URL)`` writes every case into ``folder`` and returns the ``Case`` list.
Each case says what it must become when it is served from the test site (``web``: downloaded
as a direct file) and when it is found in a crawled folder (``local``): a final crawl state
and, for rejected / failed ones, ``(stage, code)`` with a code from crawler/errors.py. Files
are made with ffmpeg from tests/data or written byte by byte; good clips get distinct bytes
(their metadata differs) so that none is a sha256 duplicate of another.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "gradio_a.mp4"  # 7 s 1920x1080 H.264, its moov at the end
QUEUED = ("queued", None, None)
ONE_OF_TWO = ("queued|duplicate", None, None)  # a pair with the same bytes: one of each


@dataclass(frozen=True)
class Case:
    name: str  # the file name (str; bytes that are not UTF-8 through surrogateescape)
    what: str  # what the case is, for a failing test's message
    web: tuple[str, str | None, str | None]  # (status, stage, code) when served and downloaded
    local: tuple[str, str | None, str | None]  # the same when found in a folder

    @property
    def good(self) -> bool:
        return self.web == QUEUED


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120,
                   capture_output=True)  # fmt: skip


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level boxes of an MP4 as (type, whole box bytes)."""
    out, offset = [], 0
    while offset + 8 <= len(data):
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        out.append((data[offset + 4 : offset + 8], data[offset : offset + size]))
        offset += size
    return out


def _rejected(stage: str, code: str) -> tuple[str, str, str]:
    return ("rejected", stage, code)


def _failed(stage: str, code: str) -> tuple[str, str, str]:
    return ("failed", stage, code)


def build(folder: Path, internal: str = "http://127.0.0.1:9", work: Path | None = None) -> list[Case]:
    """Write every case into ``folder`` (created); ``internal``: a host no crawl may reach."""
    folder.mkdir(parents=True, exist_ok=True)
    work = work or folder.parent / f"{folder.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes | Path, what: str, web, local=None) -> None:
        target = folder / name
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_bytes(data)
        cases.append(Case(name, what, web, local or web))

    not_video_probe = _rejected("probe", "not_a_video")
    not_video_crawl = _rejected("crawl", "not_a_video")

    # -- good clips under hostile names: all must be queued --------------------------------
    good_names = [
        "plain.mp4", "with space.mp4", "new\nline.mp4", "tab\there.mp4", "quote\"s 'and' `ticks`.mp4",
        "-leading-dash.mp4", "..mp4", "$(touch pwned).mp4", "semi;colon|pipe&amp.mp4",
        "back\\slash.mp4", "%2e%2e%2fetc%2fpasswd.mp4", "\u202egnp.mp4", "emoji \U0001f3ac 動画.mp4",
        os.fsdecode(b"caf\xe9-latin1.mp4"), os.fsdecode(b"bad-utf8-\xff\xfe.mp4"),
        "L" * 251 + ".mp4", "UPPER.MP4", "no_extension",
    ]  # fmt: skip
    for i, name in enumerate(good_names):
        clip = work / f"good{i}.mp4"
        _ffmpeg("-i", CLIP, "-c", "copy", "-map_metadata", "-1", "-metadata", f"comment=case {i}",
                "-f", "mp4", clip)  # fmt: skip
        add(name, clip, f"a good clip named {name!r}", QUEUED)

    # -- not videos: text, markup, data, archives, programs ---------------------------------
    text = b"This is a plain text file, not a video.\n" * 50
    add("notes.txt", text, "a text file", not_video_probe, not_video_crawl)
    add("text-renamed.mp4", text.replace(b"plain", b"other"), "text with an .mp4 name", not_video_probe)
    html = b"<!doctype html><html><body><video src=x.mp4></video></body></html>\n" * 30
    add("page-as-video.mp4", html, "HTML named .mp4", not_video_probe)
    add("data.json.mp4", b'{"video": true, "frames": [1, 2, 3]}\n' * 40, "JSON named .mp4", not_video_probe)
    add("script.sh", b"#!/bin/sh\necho hostile\n" * 20, "a shell script", not_video_probe, not_video_crawl)
    add("zeros.mp4", bytes(1024 * 1024), "1 MiB of zero bytes named .mp4", not_video_probe)
    add("random.mp4", random.Random(11).randbytes(64 * 1024), "random bytes named .mp4", not_video_probe)
    add("program.mp4", Path("/bin/true").read_bytes(), "an ELF program named .mp4", not_video_probe)
    add("doc.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "a PDF", not_video_probe, not_video_crawl)
    zipped = work / "archive.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("inside.mp4", CLIP.read_bytes())
    add("archive.zip", zipped, "a zip holding an mp4", not_video_probe, not_video_crawl)
    with zipfile.ZipFile(work / "archive2.zip", "w") as zf:
        zf.writestr("notes.txt", text)
    add("archive-renamed.mp4", work / "archive2.zip", "a zip named .mp4", not_video_probe)
    add("empty.mp4", b"", "0 bytes", _failed("download", "empty_file"), _failed("crawl", "empty_file"))

    # -- images, still and animated -----------------------------------------------------------
    images = {"png": ["-frames:v", "1"], "jpg": ["-frames:v", "1"], "bmp": ["-frames:v", "1"],
              "webp": ["-frames:v", "1"], "gif": ["-t", "1"]}  # fmt: skip
    for ext, extra in images.items():
        for size in ("160x120", "320x240"):  # the second one is served under a video name
            _ffmpeg("-f", "lavfi", "-i", f"testsrc=s={size}:r=10:d=1", *extra, work / f"image-{size}.{ext}")
        add(f"image.{ext}", work / f"image-160x120.{ext}", f"a {ext} image", not_video_probe, not_video_crawl)
    add("png-renamed.mp4", work / "image-320x240.png", "a PNG named .mp4", not_video_probe)
    add("jpg-renamed.mov", work / "image-320x240.jpg", "a JPEG named .mov", not_video_probe)
    add("gif-renamed.webm", work / "image-320x240.gif", "an animated GIF named .webm", not_video_probe)

    # -- audio only ----------------------------------------------------------------------------
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=1"]
    for name, codec in (("audio.mp3", "libmp3lame"), ("audio.wav", "pcm_s16le"), ("audio.m4a", "aac")):
        out = work / name
        _ffmpeg(*tone, "-c:a", codec, out)
        add(name, out, f"audio only ({name})", not_video_probe if name != "audio.m4a" else
            _rejected("probe", "no_video_stream"), not_video_crawl)  # fmt: skip
    for name, codec, fmt in (("audio-renamed.mp4", "aac", "mp4"), ("audio.ogg", "libvorbis", "ogg"),
                             ("audio-only.mkv", "libopus", "matroska")):  # fmt: skip
        out = work / name
        _ffmpeg(*tone, "-c:a", codec, "-f", fmt, out)
        add(name, out, f"audio only in a video container ({name})", _rejected("probe", "no_video_stream"))

    # -- playlists and scripts that would make FFmpeg open other files or hosts ----------------
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n" + "".join(
        f"#EXTINF:1.0,\n{internal}/hls/bbb/seg{i:03d}.ts\n" for i in range(3)) + "#EXT-X-ENDLIST\n"  # fmt: skip
    add("playlist-internal.mp4", playlist.encode(), "an HLS playlist of an internal host, named .mp4", not_video_probe)
    add("playlist.m3u8", playlist.encode() + b"# another\n", "an HLS playlist", not_video_probe, not_video_crawl)
    shutil.copyfile(CLIP, work / "neighbour.mp4")
    add("ffconcat.mp4", b"ffconcat version 1.0\nfile neighbour.mp4\nfile /etc/passwd\n",
        "an ffconcat script reading other files", not_video_probe)  # fmt: skip
    add("sdp.mp4", f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=video 5004 RTP/AVP 96\na=rtpmap:96 H264/90000\n".encode(), "an SDP file (RTP sockets)", not_video_probe)  # fmt: skip

    # -- video containers with nothing (good) inside ------------------------------------------
    add("ftyp-only.mp4", struct.pack(">I", 24) + b"ftypisom\0\0\x02\0isomiso2", "an MP4 type box and nothing",
        not_video_probe)  # fmt: skip
    add("heic-brand.mp4", struct.pack(">I", 24) + b"ftypheic\0\0\0\0mif1heic" + bytes(4000),
        "an HEIC image header named .mp4", not_video_probe)  # fmt: skip
    add("mkv-garbage.mkv", b"\x1a\x45\xdf\xa3" + random.Random(5).randbytes(20000), "a Matroska magic then garbage",
        not_video_probe)  # fmt: skip
    add("avi-garbage.avi", b"RIFF" + struct.pack("<I", 4000) + b"AVI LIST" + bytes(3990), "an AVI header then zeros",
        not_video_probe)  # fmt: skip
    add("ts-garbage.ts", b"".join(b"\x47" + random.Random(i).randbytes(187) for i in range(50)),
        "MPEG-TS sync bytes around garbage", not_video_probe)  # fmt: skip
    zero = work / "zero-frames.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:r=25", "-frames:v", "0", "-c:v", "libx264", zero)
    add("zero-frames.mp4", zero, "an MP4 with no frames", _rejected("probe", "no_video_stream"))
    faststart = work / "faststart.mp4"
    _ffmpeg("-i", CLIP, "-c", "copy", "-movflags", "+faststart", faststart)
    boxes = dict(_boxes(faststart.read_bytes()))
    add("moov-without-media.mp4", boxes[b"ftyp"] + boxes[b"moov"], "an MP4 index whose frames are missing",
        _rejected("probe", "undecodable"))  # fmt: skip
    data = faststart.read_bytes()
    add("cut-in-half.mp4", data[: len(data) // 2], "a faststart MP4 cut in half (first frames still play)",
        _failed("probe", "truncated"))  # fmt: skip
    data = CLIP.read_bytes()
    add("moov-at-end-cut.mp4", data[: len(data) // 2], "an MP4 cut in half before its index",
        _failed("probe", "truncated"))  # fmt: skip
    add("header-then-garbage.mp4", data[:4096] + random.Random(3).randbytes(100_000),
        "an MP4's first 4 KiB then garbage", _failed("probe", "truncated"))  # fmt: skip

    # -- videos outside the limits --------------------------------------------------------------
    one = work / "one-frame.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x240:r=25", "-frames:v", "1", "-c:v", "libx264", one)
    add("one-frame.mp4", one, "a single frame", _rejected("filters", "too_short"))
    tiny = work / "tiny-1x1.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=16x16:r=25:d=2", "-vf", "scale=1:1", "-c:v", "libx264",
            "-pix_fmt", "yuv444p", tiny)  # fmt: skip
    add("tiny-1x1.mp4", tiny, "a 1x1 video", _rejected("filters", "too_small"))
    huge = work / "huge-16000.mkv"
    _ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=16000x16000:r=1:d=1", "-frames:v", "1", "-c:v", "mjpeg",
            "-q:v", "31", huge)  # fmt: skip
    add("huge-16000.mkv", huge, "one 16000x16000 frame", _rejected("probe", "too_large"))
    avi = work / "mpeg4.avi"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x240:r=25:d=2", "-c:v", "mpeg4", avi)
    add("unknown-codec.avi", avi.read_bytes().replace(b"FMP4", b"ZZZZ"), "an AVI with a codec tag FFmpeg lacks",
        _rejected("probe", "unsupported_codec"))  # fmt: skip
    add(os.fsdecode(b"not-utf8-\xff\xfe.txt"), text * 2, "a text file with a name that is not UTF-8",
        not_video_probe, not_video_crawl)  # fmt: skip
    digests = [hashlib.sha256((folder / c.name).read_bytes()).hexdigest() for c in cases]
    assert len(set(digests)) == len(digests), "every case has its own bytes (else it is a duplicate)"
    return cases


def local_only(folder: Path, outside: Path) -> list[Case]:
    """Cases only a folder has: links in and out of it, a dangling link, a FIFO."""
    outside.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "bikes.mp4", outside / "outside.mp4")
    shutil.copyfile(DATA / "gradio_b.mp4", folder / "link-target.mp4")
    (folder / "link-outside.mp4").symlink_to(outside / "outside.mp4")
    (folder / "link-passwd.mp4").symlink_to("/etc/passwd")
    (folder / "link-inside.mp4").symlink_to(folder / "link-target.mp4")
    (folder / "link-dangling.mp4").symlink_to(folder / "no-such-file.mp4")
    (folder / "link-folder").symlink_to(outside, target_is_directory=True)  # not followed, no file
    os.mkfifo(folder / "fifo.mp4")
    refused = _rejected("crawl", "outside_root")
    return [
        Case("link-outside.mp4", "a symlink to a video outside the folder", refused, refused),
        Case("link-passwd.mp4", "a symlink to /etc/passwd", refused, refused),
        # the same bytes under two names: whichever is hashed first is queued, the other its duplicate
        Case("link-target.mp4", "a clip a symlink points to", ONE_OF_TWO, ONE_OF_TWO),
        Case("link-inside.mp4", "a symlink to a clip in the folder", ONE_OF_TWO, ONE_OF_TWO),
        Case("link-dangling.mp4", "a symlink to nothing", _failed("crawl", "missing_file"), _failed("crawl", "missing_file")),
        Case("fifo.mp4", "a FIFO (never opened)", _rejected("crawl", "not_a_file"), _rejected("crawl", "not_a_file")),
    ]  # fmt: skip
