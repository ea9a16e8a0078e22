"""Crawl throughput: pages/s of one `scrapy crawl web` process vs two sharing one Redis.

The local test site (``python -m tests.site``, its generated ``/gen/<i>.html`` tree: page i
links to 3i+1..3i+3, every 5th page shows a video) is crawled from ``/gen/0.html`` by the
project's ``web`` spider on the machine's Redis (the benchmarks' spare db, flushed before
each run: scrapy-redis keys such as ``web:requests`` are not prefixed). Pages only: item
pipelines off (``-s ITEM_PIPELINES={}``). The second process gets no start URL; it takes
requests from the shared scrapy-redis queue. ``bench/crawlprobe.py`` (a Scrapy extension
enabled on the command line) records each process's first and last response, so pages/s
runs from the first response to the last one, without start-up or the idle wait. CPU
seconds of the spiders and of the site are recorded to show what bounds the rate.
Videos: the site shows only the 6 test clips, each found once (``web:videos_seen``), so
videos/s here is discovery only; bench/e2e.py measures videos end to end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (BENCH_REDIS_URL, PYTHON, ROOT, LoopbackServer, Report, bench_redis, median,  # noqa: E402
                          project_env, run)  # fmt: skip

class LocalSite(LoopbackServer):
    """``python -m tests.site`` on a free port with a generated tree of ``pages`` pages."""

    def __init__(self, pages: int):
        super().__init__([PYTHON, "-m", "tests.site", "--port", "{port}"], "the local test site (python -m tests.site)",
                         env=project_env(GEN_PAGES=pages, GEN_VIDEO_EVERY=5), cwd=ROOT, stop_signal=signal.SIGINT)


def crawl(site: LocalSite, n_procs: int, pages: int, workdir: Path, timeout: float) -> dict:
    """One crawl of the whole tree by ``n_procs`` spider processes; rates and CPU seconds."""
    client = bench_redis()  # flushed: an empty queue and dupefilter
    common = ["-s", "ITEM_PIPELINES={}", "-s", 'EXTENSIONS={"bench.crawlprobe.CrawlProbe": 100}',
              "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=3", "-s", "LOG_LEVEL=WARNING",
              "-s", "TELNETCONSOLE_ENABLED=False"]  # fmt: skip
    env = project_env(REDIS_URL=BENCH_REDIS_URL, ALLOW_PRIVATE_NETWORKS=1)
    procs, probes = [], []
    site_cpu0 = site.cpu()
    for i in range(n_procs):
        probe = workdir / f"probe-{n_procs}-{i}.json"
        probe.unlink(missing_ok=True)
        args = [PYTHON, "-m", "scrapy", "crawl", "web", *common, "-s", f"BENCH_PROBE_FILE={probe}"]
        if i == 0:
            args += ["-a", f"url={site.url}/gen/0.html", "-a", "depth=40"]
        log = open(workdir / f"spider-{n_procs}-{i}.log", "w")
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True))
        probes.append(probe)
    cpu, deadline = 0.0, time.monotonic() + timeout
    for proc in procs:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu += usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                break
            time.sleep(0.1)
    site_cpu = site.cpu() - site_cpu0
    client.flushdb()
    found = [json.loads(p.read_text()) for p in probes if p.exists()]
    if len(found) != n_procs:
        codes = [p.returncode for p in procs]
        raise RuntimeError(f"{n_procs - len(found)} of {n_procs} spiders wrote no probe (exit codes {codes}); "
                           f"see {workdir}/spider-*.log")  # fmt: skip
    responses = sum(f["responses"] for f in found)
    firsts = [f["first"] for f in found if f["first"]]
    lasts = [f["last"] for f in found if f["last"]]
    window = max(lasts) - min(firsts) if firsts else 0.0
    return {"processes": n_procs, "pages": responses, "videos": sum(f["items"] for f in found),
            "seconds": window, "pages_per_s": responses / window if window else 0.0,
            "per_process_pages": [f["responses"] for f in found], "spider_cpu_s": cpu,
            "site_cpu_s": site_cpu, "complete": responses >= pages}  # fmt: skip


def main(report: Report, args) -> None:
    try:
        import crawler.spiders.web  # noqa: F401
        import tests.site  # noqa: F401
    except ImportError as exc:
        report.not_measured("two processes / one", f"{exc}", ">= 1.8x")
        return
    pages = args.pages or (2000 if args.quick else 10_000)
    rounds = 1 if args.quick else 3
    report.figure("pages_in_site", pages)
    report.figure("cores", os.cpu_count())
    runs: dict[int, list[dict]] = {1: [], 2: []}
    site = LocalSite(pages)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
            for _ in range(rounds):  # interleaved: one, two, one, two...
                for n in (1, 2):
                    runs[n].append(crawl(site, n, pages, Path(tmp), timeout=args.timeout))
    finally:
        site.stop()
    one = median([r["pages_per_s"] for r in runs[1]])
    two = median([r["pages_per_s"] for r in runs[2]])
    report.figure("runs", runs)
    for n in (1, 2):
        last = runs[n][-1]
        report.figure(f"cpu_per_page_ms_{n}_proc", 1000 * (last["spider_cpu_s"]) / max(1, last["pages"]))
        report.figure(f"site_cpu_per_page_ms_{n}_proc", 1000 * last["site_cpu_s"] / max(1, last["pages"]))
    incomplete = [r for rs in runs.values() for r in rs if not r["complete"]]
    note = f"{len(incomplete)} runs did not fetch every page" if incomplete else ""
    report.target("pages/s, one process", one, None, "(figure)", None, unit="pages/s", note=note)
    report.target("pages/s, two processes", two, one, ">= 1.8x one", two >= 1.8 * one, unit="pages/s")
    report.target("two processes / one", two / one if one else None, 1.0, ">= 1.8", (two / one >= 1.8) if one else None,
                  unit="x", note=f"{os.cpu_count()} cores shared by the spiders and the site")  # fmt: skip
    videos = runs[1][-1]
    report.figure("videos_found_per_crawl", videos["videos"])
    report.figure("videos_per_s_one_process", videos["videos"] / videos["seconds"] if videos["seconds"] else None)


def _extra(parser) -> None:
    parser.add_argument("--pages", type=int, default=0, help="pages in the site (default 2000 quick, 10000)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per crawl at most")


if __name__ == "__main__":
    run(main, "crawl", __doc__.splitlines()[0], extra=_extra)
