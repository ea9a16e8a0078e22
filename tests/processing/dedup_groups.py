"""35 short clips in 7 groups (an original and 4 copies each), made with bench/dedup.py's generator.

Originals: 4 s at 320x180, CRF 18, cut from the tests/data clips and from two of the bench's
synthetic lavfi sources (the cellular automaton is one, seeded). Copies, as bench/dedup.py makes
them (``KINDS``): a 2 s trim (``trim_2s``), an 80% crop (``crop_80``), a half-size scale
(``half_size``), and a CRF 36 re-encode. Every copy is shorter or of a lower resolution x
bitrate than its original, so by neardup's rule the original is each group's canonical.
Items carry what the crawl gives the workers: sha256 id, probe metadata, perceptual hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bench.dedup import KINDS, SYNTHETIC, _make
from crawler.items import QUEUED, VideoItem
from tests.conftest import DATA

ORIGINAL = ["-vf", "scale=320:180,setsar=1", "-r", "25", "-t", "4", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "18", "-pix_fmt", "yuv420p", "-an"]  # fmt: skip
SOURCES = {  # group -> (tests/data clip or synthetic source, seconds into it)
    "bunny": ("bigbuckbunny", 0.5), "bikes": ("bikes", 3.0), "carphone": ("carphone_pristine", 0.0),
    "gradio_a": ("gradio_a", 1.0), "world": ("gradio_world", 8.0),
    "mandelbrot": ("syn_mandelbrot", 1.0), "cellauto": ("syn_cellauto", 1.0),
}  # fmt: skip
# lavfi's cellular automaton starts from a random grid: seeded, so every run sees the same clip
# (its half-size copy is found by the hash layer, with a frame confirmation of 0.47-0.61 by
# seed against the 0.5 bar: seed 2 gives 0.61)
SEEDS = {"syn_cellauto": ":seed=2"}
COPIES = {"trim": KINDS["trim_2s"][1], "crop": KINDS["crop_80"][1], "half": KINDS["half_size"][1],
          "crf36": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "36", "-an"]}  # fmt: skip


@dataclass(frozen=True)
class Clip:
    name: str  # "<group>" for the original, "<group>__<kind>" for a copy
    group: str
    kind: str  # "original" or a key of COPIES
    path: Path


def make_groups(folder: Path) -> list[Clip]:
    """The 35 clips under ``folder`` (made once: existing files are kept), originals first."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for group, (source, start) in SOURCES.items():
        src = DATA / f"{source}.mp4"
        if source in SYNTHETIC:
            src = folder / f"{source}.mp4"
            _make(("synthetic", None, src, SYNTHETIC[source] + SEEDS.get(source, "")))
        original = folder / f"{group}.mp4"
        _make(("original", src, original, ["-ss", str(start), *ORIGINAL]))  # ffmpeg -i src <args> out
        clips.append(Clip(group, group, "original", original))
    for group in SOURCES:
        for kind, args in COPIES.items():
            out = folder / f"{group}__{kind}.mp4"
            _make((kind, folder / f"{group}.mp4", out, args))
            clips.append(Clip(out.stem, group, kind, out))
    return clips


def queued_item(clip: Clip) -> VideoItem:
    """The item the crawl hands the workers for ``clip``: sha256 id, probe metadata, phash."""
    from pipelines.media import phash, probe

    sha = hashlib.sha256(clip.path.read_bytes()).hexdigest()
    item = VideoItem(url=clip.path.as_uri(), source="local", path=str(clip.path), sha256=sha, video_id=sha,
                     title=clip.name, status=QUEUED, phash=phash(clip.path, timeout=60))  # fmt: skip
    for key, value in probe(clip.path, timeout=60).items():
        if hasattr(item, key):
            setattr(item, key, value)
    return item

