"""Media steps per video (sha256 + probe + phash) against ffprobe-as-a-process + videohash2.

Clips: 20 s 640x360 H.264 (+AAC where the source has audio), made once with ffmpeg from the
clips in tests/data (looped, scaled; cached under bench/results/media_clips). Both sides run
on the same clips in the same process, pinned to one CPU core (``sched_setaffinity``, which
the ffprobe / ffmpeg subprocesses of the baseline inherit). Ours: the median of ``--repeat``
runs per clip; baseline: one run per clip (it takes ~1 s), both after one warm-up.

Targets: speedup >= 25x against the baseline; median <= 60 ms per clip on one core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS, ROOT, Report, cpu_info, median, ratio, run  # noqa: E402

SOURCES = ["gradio_world", "bikes", "bigbuckbunny", "carphone_pristine", "gradio_b", "gradio_a"]
CLIP_SECONDS = 20
CLIP_DIR = RESULTS / "media_clips"


def make_clip(name: str) -> Path:
    """``<name>_20s_360p.mp4``: the source looped to 20 s, scaled to 640x360, x264 defaults."""
    out = CLIP_DIR / f"{name}_{CLIP_SECONDS}s_360p.mp4"
    if out.exists() and out.stat().st_size > 0:
        return out
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    src = ROOT / "tests" / "data" / f"{name}.mp4"
    tmp = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(src),
           "-t", str(CLIP_SECONDS), "-vf", "scale=640:360,setsar=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(tmp)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    tmp.replace(out)
    return out


def pin_one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"


def ours(path: Path) -> dict:
    from pipelines.media import phash, probe, sha256_file

    times = {}
    start = time.perf_counter()
    sha256_file(path)
    times["sha256"] = time.perf_counter() - start
    start = time.perf_counter()
    probe(path, 30)
    times["probe"] = time.perf_counter() - start
    start = time.perf_counter()
    phash(path, 30)
    times["phash"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def baseline(path: Path, storage: Path) -> dict:
    from pipelines.media import probe_ffprobe
    from videohash2 import VideoHash

    times = {}
    start = time.perf_counter()
    probe_ffprobe(path, 60)
    times["ffprobe"] = time.perf_counter() - start
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(dir=storage))
    VideoHash(path=str(path), storage_path=str(work) + os.sep)
    times["videohash2"] = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    times["total"] = sum(times.values())
    return times


def main(report: Report, args) -> None:
    report.figure("machine", cpu_info())
    report.note(pin_one_core())
    names = SOURCES[:3] if args.quick else SOURCES
    repeat = 3 if args.quick else 7
    clips = [make_clip(n) for n in names]
    storage = Path(tempfile.mkdtemp(prefix="bench-videohash-"))
    try:
        ours(clips[0])  # warm-up: imports, FFmpeg init
        baseline(clips[0], storage)
        rows = []
        for clip in clips:
            runs = [ours(clip) for _ in range(repeat)]
            mine = {k: median([r[k] for r in runs]) for k in runs[0]}
            base = baseline(clip, storage)
            rows.append((clip.stem, mine, base))
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    print(f"{'clip':34s} {'sha256':>8s} {'probe':>8s} {'phash':>8s} {'ours':>8s} | "
          f"{'ffprobe':>8s} {'vhash2':>8s} {'base':>8s} | ratio")  # fmt: skip
    for name, mine, base in rows:
        ms = {k: v * 1000 for k, v in mine.items()}
        bs = {k: v * 1000 for k, v in base.items()}
        print(f"{name:34s} {ms['sha256']:8.1f} {ms['probe']:8.1f} {ms['phash']:8.1f} "
              f"{ms['total']:8.1f} | {bs['ffprobe']:8.1f} {bs['videohash2']:8.1f} "
              f"{bs['total']:8.1f} | {bs['total'] / ms['total']:5.0f}x")  # fmt: skip
        report.figure(f"clip/{name}", {"ours_ms": {k: round(v, 2) for k, v in ms.items()},
                                       "baseline_ms": {k: round(v, 1) for k, v in bs.items()}})
    ours_ms = median([m["total"] for _, m, _ in rows]) * 1000
    base_ms = median([b["total"] for _, _, b in rows]) * 1000
    for step in ("sha256", "probe", "phash"):
        report.figure(f"median_{step}_ms", median([m[step] for _, m, _ in rows]) * 1000)
    report.figure("median_ffprobe_ms", median([b["ffprobe"] for _, _, b in rows]) * 1000)
    report.figure("median_videohash2_ms", median([b["videohash2"] for _, _, b in rows]) * 1000)
    report.figure("clips", len(rows))
    speedup = ratio(base_ms, ours_ms)
    print(f"median per clip: ours {ours_ms:.1f} ms, baseline {base_ms:.0f} ms, speedup {speedup:.0f}x")
    report.target("speedup vs ffprobe+videohash2", speedup, 1.0, ">= 25x",
                  met=speedup is not None and speedup >= 25, unit="x")  # fmt: skip
    report.target("median ms per clip (sha256+probe+phash, 1 core)", ours_ms, base_ms, "<= 60 ms",
                  met=ours_ms <= 60, unit="ms")  # fmt: skip


if __name__ == "__main__":
    run(main, "media", __doc__.splitlines()[0])
