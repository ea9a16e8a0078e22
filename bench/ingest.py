"""Ingest: videos/s of the crawl (download + sha256 + probe + phash + hand-off) vs a video2dataset-style baseline.

Clips: 8-12 s 640x360 H.264 (+AAC where the source has audio), made once with ffmpeg and
cached under ``bench/results/ingest_clips``: six 24 s bases (the tests/data clips looped,
scaled, a keyframe every second), then keyframe-aligned stream-copy cuts of 8-12 s at
different starts, every one with its own bytes (200 full, ``--quick`` 100). They are served
over loopback HTTP by ``python -m http.server`` (one threaded process); both sides fetch the
same URLs from the same server, one after the other, in the same run (``--rounds``
alternates them).

- Baseline: ``python -m bench.v2dstyle`` (what video2dataset 1.3 does per direct URL with
  ``output_format=files`` and ffprobe metadata: 2 processes x a 16-thread download pool,
  bodies in memory, ``ffprobe`` as a process per file, files + JSON written).
- Project: ``scrapy crawl urls -a path=<list>.csv`` through every item pipeline (takedowns,
  download streamed to disk with sha256 on the way, exact dedup, PyAV probe, keyframe
  pHash, filters, hand-off to the Redis stream + ledger), on the benchmarks' Redis db
  (``BENCH_REDIS_URL``, flushed) with a fresh ``KEY_PREFIX`` and data dir. Download
  concurrency as the baseline's threads: ``MEDIA_CONCURRENT_DOWNLOADS`` and
  ``CONCURRENT_REQUESTS_PER_DOMAIN`` = 16 (``--spider-settings`` adds more ``-s``).

videos/s = videos done / seconds from launch to the last video done (the baseline: its
process's exit; the project: the last item through the hand-off, ``bench/crawlprobe.py``,
so the idle wait before the spider closes is not counted; process start-up is counted on
both sides). CPU seconds (``wait4``: the process and the children it waited for, ffprobe
included) and the server's CPU are recorded: on a shared machine CPU per video says more
than wall time. Target: project >= 3x the baseline, while doing more per video.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (BENCH_REDIS_URL, PYTHON, RESULTS, ROOT, LoopbackServer, Report, bench_redis,  # noqa: E402
                          cpu_info, median, project_env, ratio, run)  # fmt: skip

SOURCES = ["bigbuckbunny", "bikes", "gradio_world", "carphone_pristine", "gradio_a", "gradio_b"]
BASE_SECONDS = 24
STARTS = range(0, 13)  # cut starts (s): keyframes, a keyframe every second in the bases
DURATIONS = (8, 9, 10, 11, 12)
CLIP_DIR = RESULTS / "ingest_clips"


# -- the clips --------------------------------------------------------------------------
def make_base(name: str) -> Path:
    """``base_<name>.mp4``: the source looped to 24 s, 640x360 at 25 fps, a keyframe each second."""
    out = CLIP_DIR / f"base_{name}.mp4"
    if out.exists() and out.stat().st_size > 0:
        return out
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(ROOT / "tests" / "data" / f"{name}.mp4"),
           "-t", str(BASE_SECONDS), "-vf", "scale=640:360,setsar=1,fps=25", "-c:v", "libx264", "-preset", "veryfast",
           "-force_key_frames", "expr:gte(t,n_forced)", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
           str(tmp)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=600, capture_output=True)
    tmp.replace(out)
    return out


def make_clips(n: int) -> list[Path]:
    """``n`` distinct 8-12 s cuts of the bases (the same ``n`` gives the same clips; 100 are the first 100 of 200)."""
    combos = [(name, start, dur) for name in SOURCES for start in STARTS for dur in DURATIONS]
    random.Random(13).shuffle(combos)
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} clips, asked for {n}")
    clips = []
    for name, start, dur in combos[:n]:
        out = CLIP_DIR / "clips" / f"{name}_s{start:02d}_d{dur:02d}.mp4"
        if not (out.exists() and out.stat().st_size > 0):
            base = make_base(name)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".part.mp4")
            cmd = ["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-i", str(base), "-t", str(dur),
                   "-c", "copy", "-movflags", "+faststart", str(tmp)]  # fmt: skip
            subprocess.run(cmd, check=True, timeout=120, capture_output=True)
            tmp.replace(out)
        clips.append(out)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in clips}
    if len(digests) != len(clips):
        raise RuntimeError(f"only {len(digests)} distinct files among {len(clips)} clips")
    return clips


# -- processes ----------------------------------------------------------------------------
def wait_cpu(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Wait for ``proc`` (its group killed past ``timeout``); exit code and CPU seconds with its children."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return -9, usage.ru_utime + usage.ru_stime
        time.sleep(0.05)


class Server(LoopbackServer):
    """``python -m http.server`` over the clip folder on a free loopback port."""

    def __init__(self, folder: Path):
        super().__init__([PYTHON, "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", str(folder)],
                         "the clip server (python -m http.server)")


# -- the two sides --------------------------------------------------------------------------
def run_baseline(urls: list[str], workdir: Path, server: Server, timeout: float) -> dict:
    folder = workdir / f"baseline-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    listing = folder / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    cpu0 = server.cpu()
    start = time.time()
    with open(folder / "log.txt", "w") as log:
        proc = subprocess.Popen([PYTHON, "-m", "bench.v2dstyle", "--urls", str(listing), "--out", str(folder / "out"),
                                 "--processes", "2", "--threads", "16"], cwd=ROOT, env=project_env(),
                                stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)  # fmt: skip
        code, cpu = wait_cpu(proc, timeout)
    seconds = time.time() - start
    out = proc.stdout.read()
    shutil.rmtree(folder / "out", ignore_errors=True)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        raise RuntimeError(f"baseline exited {code}: {(folder / 'log.txt').read_text()[-800:]}")
    done = json.loads(lines[-1])
    return {"videos": done["ok"], "failed": done["failed"], "seconds": seconds, "videos_per_s": done["ok"] / seconds,
            "cpu_s": cpu, "server_cpu_s": server.cpu() - cpu0}  # fmt: skip


def run_project(urls: list[str], workdir: Path, server: Server, timeout: float, extra: list[str],
                redis_url: str = BENCH_REDIS_URL, inspect=None) -> dict:  # fmt: skip
    """One crawl of ``urls``; ``inspect(client)``, when given, runs before the db is flushed (its
    result in ``"inspect"``)."""
    from crawler.keys import RedisKeys
    from crawler.ledger import Ledger

    client = bench_redis(redis_url)  # flushed: no start URLs, seen sets or claims of an earlier run
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    folder = workdir / f"project-{prefix}"
    folder.mkdir()
    listing = folder / "urls.csv"
    listing.write_text("url\n" + "\n".join(urls) + "\n")
    probe = folder / "probe.json"
    env = project_env(REDIS_URL=redis_url, KEY_PREFIX=prefix, DATA_DIR=folder / "data", ALLOW_PRIVATE_NETWORKS=1)
    env.pop("FILES_STORE", None)
    cmd = [PYTHON, "-m", "scrapy", "crawl", "urls", "-a", f"path={listing}",
           "-s", 'EXTENSIONS={"bench.crawlprobe.CrawlProbe": 100}', "-s", f"BENCH_PROBE_FILE={probe}",
           "-s", "LOG_LEVEL=WARNING", "-s", "TELNETCONSOLE_ENABLED=False",
           "-s", "MEDIA_CONCURRENT_DOWNLOADS=16", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=16", *extra]  # fmt: skip
    cpu0 = server.cpu()
    start = time.time()
    with open(folder / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        code, cpu = wait_cpu(proc, timeout)
    exit_seconds = time.time() - start
    server_cpu = server.cpu() - cpu0
    found = json.loads(probe.read_text()) if probe.exists() else {}
    keys = RedisKeys(prefix)
    counts = Ledger(client, keys).counts()
    queued = client.xlen(keys.stream)
    seen = inspect(client) if inspect else None
    client.flushdb()
    shutil.rmtree(folder / "data", ignore_errors=True)
    if code != 0 or not found.get("last_item"):
        raise RuntimeError(f"scrapy crawl urls exited {code} with no items: {(folder / 'log.txt').read_text()[-800:]}")
    seconds = found["last_item"] - start
    return {"videos": queued, "items": found["items"], "ledger": counts, "seconds": seconds,
            "videos_per_s": queued / seconds, "process_seconds": exit_seconds, "cpu_s": cpu,
            "server_cpu_s": server_cpu, "inspect": seen}  # fmt: skip


def main(report: Report, args) -> None:
    try:
        import crawler.spiders.urls  # noqa: F401
    except ImportError as exc:
        report.not_measured("project / baseline videos/s", str(exc), ">= 3x")
        return
    n = args.clips or (100 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 2)
    report.figure("machine", cpu_info())
    report.figure("clips", n)
    clips = make_clips(n)
    report.figure("clip_mib_total", round(sum(p.stat().st_size for p in clips) / 2**20, 1))
    runs: dict[str, list[dict]] = {"baseline": [], "project": []}
    server = Server(clips[0].parent)
    extra = [x for s in args.spider_settings for x in ("-s", s)]
    try:
        urls = [f"{server.url}/{p.name}" for p in clips]
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            for _ in range(rounds):  # alternated: baseline, project, baseline, project...
                runs["baseline"].append(run_baseline(urls, Path(tmp), server, args.timeout))
                runs["project"].append(run_project(urls, Path(tmp), server, args.timeout, extra))
    finally:
        server.stop()
    report.figure("runs", runs)
    base = median([r["videos_per_s"] for r in runs["baseline"]])
    ours = median([r["videos_per_s"] for r in runs["project"]])
    for side, rs in runs.items():
        report.figure(f"{side}_cpu_ms_per_video", median([1000 * r["cpu_s"] / max(1, r["videos"]) for r in rs]))
        report.figure(f"{side}_server_cpu_ms_per_video",
                      median([1000 * r["server_cpu_s"] / max(1, r["videos"]) for r in rs]))  # fmt: skip
    short = [r for r in runs["project"] if r["videos"] < n] + [r for r in runs["baseline"] if r["videos"] < n]
    note = f"{len(short)} runs handled fewer than {n} videos" if short else ""
    report.target("baseline videos/s (v2d-style: 2 procs x 16 threads + ffprobe)", base, None, "(figure)", None,
                  unit="videos/s", note=note)  # fmt: skip
    report.target("project ingest videos/s (download+sha256+probe+phash+hand-off)", ours, base, ">= 3x baseline",
                  ours is not None and base is not None and ours >= 3 * base, unit="videos/s")  # fmt: skip
    rate = ratio(ours, base)
    report.target("project / baseline videos/s", rate, 1.0, ">= 3", rate is not None and rate >= 3, unit="x",
                  note=f"{os.cpu_count()} cores shared by both sides' server and Redis; load "
                       f"{report.figures.get('loadavg_at_start')} at start")  # fmt: skip
    cpu_ratio = ratio(report.figures["baseline_cpu_ms_per_video"], report.figures["project_cpu_ms_per_video"])
    report.figure("baseline_over_project_cpu_per_video", cpu_ratio)


def _extra(parser) -> None:
    parser.add_argument("--clips", type=int, default=0, help="clips (default 100 quick, 200)")
    parser.add_argument("--rounds", type=int, default=0, help="alternated rounds (default 1 quick, 2)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per side per round at most")
    parser.add_argument("--spider-settings", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra -s settings for the project's crawl")  # fmt: skip


if __name__ == "__main__":
    run(main, "ingest", __doc__.splitlines()[0], extra=_extra)
