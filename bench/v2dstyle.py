"""The ingest baseline: what video2dataset does per direct URL (thread-pool download, then ffprobe as a process).

Written here, not installed: ``python -m bench.v2dstyle --urls urls.txt --out DIR`` splits the
URL list into ``--processes`` shards (video2dataset's ``processes_count``, default 2), and each
worker process does what video2dataset 1.3's download worker does with ``output_format=files``
and only the ffprobe subsampler (its ``--extract_metadata``):

1. downloads its URLs with a thread pool of ``--threads`` (``thread_count``, default 16),
   ``imap_unordered``, each body read whole into memory (video2dataset keeps each video's bytes
   in memory between its steps);
2. in the worker's main thread, for each downloaded video: writes the bytes to a temporary file
   and runs ``ffprobe -show_format -show_streams -of json`` on it as a subprocess (what
   ``ffmpeg.probe`` does), then writes ``<key>.mp4`` and ``<key>.json`` (the probe) into the
   output folder.

Prints one JSON line: ``{"ok", "failed", "bytes", "seconds"}``. No sha256, no perceptual hash,
no dedup, no shared queue: less work than the project's ingest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing import get_context
from multiprocessing.pool import ThreadPool
from pathlib import Path


def download(url: str, timeout: float = 60.0) -> tuple[str, bytes | None, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return url, response.read(), None
    except Exception as exc:  # noqa: BLE001 - recorded per sample, as video2dataset does
        return url, None, f"{type(exc).__name__}: {exc}"


def ffprobe_bytes(data: bytes, tmpdir: str) -> dict:
    """video2dataset's FFProbeSubsampler: the bytes to a temp file, ``ffprobe`` on it."""
    with tempfile.NamedTemporaryFile(dir=tmpdir, suffix=".mp4") as tmp:
        tmp.write(data)
        tmp.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", tmp.name],
                             capture_output=True, timeout=60, check=True)  # fmt: skip
    return json.loads(out.stdout)


def shard(job: tuple[int, list[str], str, int]) -> dict:
    """One worker process: download the shard's URLs with a thread pool, probe and write each."""
    index, urls, out, threads = job
    folder = Path(out) / f"{index:05d}"
    folder.mkdir(parents=True, exist_ok=True)
    ok = failed = size = 0
    with tempfile.TemporaryDirectory(prefix="v2dstyle-") as tmpdir, ThreadPool(threads) as pool:
        for n, (url, data, error) in enumerate(pool.imap_unordered(download, urls)):
            key = f"{index:05d}{n:04d}"
            meta = {"url": url, "key": key, "status": "success", "error_message": error}
            if data is None:
                failed += 1
                continue
            try:
                meta["video_metadata"] = ffprobe_bytes(data, tmpdir)
            except (subprocess.SubprocessError, ValueError) as exc:
                meta.update(status="failed_to_subsample", error_message=str(exc)[:300])
                failed += 1
                continue
            (folder / f"{key}.mp4").write_bytes(data)
            (folder / f"{key}.json").write_text(json.dumps(meta))
            ok += 1
            size += len(data)
    return {"ok": ok, "failed": failed, "bytes": size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", required=True, help="a text file, one URL a line")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    urls = [u.strip() for u in Path(args.urls).read_text().splitlines() if u.strip()]
    per = -(-len(urls) // args.processes)
    jobs = [(i, urls[i * per:(i + 1) * per], args.out, args.threads) for i in range(args.processes)]
    start = time.perf_counter()
    with get_context("spawn").Pool(args.processes) as pool:  # video2dataset's multiprocessing distributor
        results = pool.map(shard, jobs)
    seconds = time.perf_counter() - start
    total = {k: sum(r[k] for r in results) for k in ("ok", "failed", "bytes")}
    print(json.dumps({**total, "seconds": round(seconds, 3)}), flush=True)
    return 0 if total["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
