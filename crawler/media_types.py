"""What counts as a video before it is probed: the extensions, and the container a file's first bytes announce."""

from __future__ import annotations

from pathlib import PurePosixPath

# Extensions that say "video" even when the bytes do not (the probe pipeline is the real check
# and records what is not a video). Downloads keep one of these as their file's extension.
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .webm .mkv .avi .ogv .flv .wmv .mpg .mpeg .3gp .3g2 .mts .m2ts .ts .vob .asf".split()
)
# ISO-BMFF brands of still images and audio-only files (HEIC, AVIF, M4A...): not videos.
NON_VIDEO_BRANDS = frozenset({b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B ", b"M4P "})
SNIFF_BYTES = 400  # what sniff() needs to see of a file


def has_video_extension(name: str) -> bool:
    """True when a file name or URL path ends in one of ``VIDEO_EXTENSIONS`` (any case)."""
    return PurePosixPath(name).suffix.lower() in VIDEO_EXTENSIONS


def sniff(head: bytes) -> str | None:
    """The container family the first bytes of a file announce, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return None if head[8:12] in NON_VIDEO_BRANDS else "isobmff"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpeg-ts"
    if len(head) >= 197 and head[4] == 0x47 and head[196] == 0x47:
        return "m2ts"
    return None
