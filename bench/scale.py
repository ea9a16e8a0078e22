"""Scale of the crawl: Redis work per crawled page and per video, Redis' capacity, spider processes one Redis serves.

On a private ``redis-server`` (started on a free loopback port, no persistence, stopped after),
so that ``INFO commandstats`` and the server's CPU count only the crawl:

1. pages: ``scrapy crawl web`` over the local test site's generated tree (``/gen/<i>.html``,
   item pipelines off, as bench/crawl.py);
2. videos: ``scrapy crawl urls`` over the ingest clips (bench/ingest.py) through every item
   pipeline (download, dedup, probe, phash, filters, hand-off);
3. ``redis-benchmark`` (50 clients, no pipelining: many spider processes each waiting on its
   own round trips) on the same server, for the commands of the mix and for the ledger's Lua
   script as the crawl runs it.

For each crawl: commands per page / per video (sent by the spider, and run in all with those
its Lua scripts run; from ``INFO commandstats``, and a smaller ``MONITOR``ed pass to tell them
apart), the server's CPU per page / video (``/proc``: the commands with their network I/O, at
this load) and the spider's own CPU per page / video (the slope between the two passes, so its
start-up is left out). Redis runs commands on one core and saturates when that core is busy:

    spider processes per Redis = (units/s one Redis serves) / (units/s of one spider process)

with one spider process on a core of its own doing ``1 / spider CPU per unit`` units/s, and
one Redis serving ``1 / server CPU per unit`` units/s (measured) or ``1 / sum(commands x
1/ops of their kind)`` (the redis-benchmark mix: a saturated server, where epoll batches the
clients' commands, so per command it costs less than at the crawl's own light load).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PYTHON, ROOT, LoopbackServer, Report, cpu_info, project_env, ratio, run  # noqa: E402
from bench.crawl import LocalSite  # noqa: E402
from bench.ingest import Server, make_clips, run_project, wait_cpu  # noqa: E402

# the benchmark's own commands, not the crawl's
BENCH_COMMANDS = {"flushdb", "info", "ping", "xlen", "hgetall", "select", "client", "config", "memory", "scan"}


class PrivateRedis(LoopbackServer):
    """``redis-server`` on a free loopback port, in memory only, owned by this script."""

    def __init__(self):
        super().__init__(["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--daemonize", "no", "--logfile", ""], "redis-server", start_timeout=10)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        self.client = redis.Redis.from_url(self.url)

    def snapshot(self) -> dict:
        stats = self.client.info("commandstats")
        return {"cpu": self.cpu(), "memory": self.client.info("memory")["used_memory"],
                "calls": {k.removeprefix("cmdstat_"): v for k, v in stats.items()}}  # fmt: skip


class Monitor(threading.Thread):
    """``MONITOR`` on the server while a crawl runs: commands sent by clients (several may share a
    round trip in a pipeline) vs run inside Lua scripts. MONITOR costs the server CPU: its passes
    are not the ones timed."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        import redis

        self.client = redis.Redis.from_url(url)
        self.sent: Counter = Counter()
        self.in_lua: Counter = Counter()
        self.ready = threading.Event()
        self._monitor = None

    def run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self._monitor = monitor
                self.ready.set()
                for entry in monitor.listen():
                    name = entry.get("command", "").split(" ", 1)[0].strip('"').lower()
                    (self.in_lua if entry.get("client_type") == "lua" else self.sent)[name] += 1
        except Exception:  # noqa: BLE001 - the connection is closed to stop it
            self.ready.set()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.connection.disconnect()
        self.join(5)

    def per_unit(self, units: int) -> dict:
        sent = {k: v for k, v in self.sent.items() if k not in BENCH_COMMANDS and k != "monitor"}
        return {"sent": round(sum(sent.values()) / units, 2),
                "sent_by_command": {k: round(v / units, 2) for k, v in Counter(sent).most_common()},
                "in_lua": round(sum(self.in_lua.values()) / units, 2)}  # fmt: skip


def delta(before: dict, after: dict, units: int) -> dict:
    """Per-unit commands (by name), command CPU (commandstats usec) and server CPU between two snapshots."""
    calls, usec = {}, {}
    for name, now in after["calls"].items():
        if name.split("|")[0] in BENCH_COMMANDS:
            continue
        was = before["calls"].get(name, {"calls": 0, "usec": 0})
        if now["calls"] > was["calls"]:
            calls[name] = (now["calls"] - was["calls"]) / units
            usec[name] = (now["usec"] - was["usec"]) / units
    return {"commands": round(sum(calls.values()), 2),
            "by_command": {k: round(v, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
            "command_usec": round(sum(usec.values()), 1),
            "server_cpu_ms": round(1000 * (after["cpu"] - before["cpu"]) / units, 3)}  # fmt: skip


def crawl_pages(redis: PrivateRedis, pages: int, workdir: Path, timeout: float, monitor: bool = False) -> dict:
    """One pages-only ``scrapy crawl web`` of the generated tree; Redis work per page (``monitor``:
    round trips instead, on a MONITORed server)."""
    site = LocalSite(pages)
    probe = workdir / "pages-probe.json"
    try:
        redis.client.flushdb()
        cmd = [PYTHON, "-m", "scrapy", "crawl", "web", "-a", f"url={site.url}/gen/0.html", "-a", "depth=40",
               "-s", "ITEM_PIPELINES={}", "-s", 'EXTENSIONS={"bench.crawlprobe.CrawlProbe": 100}',
               "-s", f"BENCH_PROBE_FILE={probe}", "-s", "LOG_LEVEL=WARNING",
               "-s", "TELNETCONSOLE_ENABLED=False"]  # fmt: skip
        env = project_env(REDIS_URL=redis.url, ALLOW_PRIVATE_NETWORKS=1, DATA_DIR=workdir / "pages-data")
        watch = _watch(redis, monitor)
        before = redis.snapshot()
        with open(workdir / "pages.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            code, cpu = wait_cpu(proc, timeout)
        after = redis.snapshot()
        if watch:
            watch.stop()
    finally:
        site.stop()
    found = json.loads(probe.read_text()) if probe.exists() else {}
    n = found.get("responses", 0)
    if code != 0 or not n:
        raise RuntimeError(f"scrapy crawl web exited {code}: {(workdir / 'pages.log').read_text()[-800:]}")
    window = (found["last"] - found["first"]) or 1e-9
    if watch:
        return {"small_pages": n, "small_spider_cpu_s": cpu, **watch.per_unit(n)}
    return {"pages": n, "pages_per_s": n / window, "spider_cpu_s": cpu,
            "redis_memory_bytes": (after["memory"] - before["memory"]) / n, **delta(before, after, n)}  # fmt: skip


def key_memory(client) -> dict[str, int]:
    """Bytes each key holds (``MEMORY USAGE``, every element counted), by name with the run's prefix cut."""
    out = {}
    for key in client.scan_iter(count=1000):
        name = key.decode()
        family = name.split(":", 1)[1] if name.startswith("bench") else name
        out[family] = out.get(family, 0) + (client.memory_usage(key, samples=0) or 0)
    return out


def _watch(redis: PrivateRedis, monitor: bool) -> Monitor | None:
    if not monitor:
        return None
    watch = Monitor(redis.url)
    watch.start()
    watch.ready.wait(5)
    return watch


def crawl_videos(redis: PrivateRedis, clips: int, workdir: Path, timeout: float, monitor: bool = False) -> dict:
    """One ``scrapy crawl urls`` of the ingest clips through every item pipeline; Redis work per
    video (``monitor``: round trips instead)."""
    paths = make_clips(clips)
    server = Server(paths[0].parent)
    try:
        urls = [f"{server.url}/{p.name}" for p in paths]
        redis.client.flushdb()
        watch = _watch(redis, monitor)
        before = redis.snapshot()
        r = run_project(urls, workdir, server, timeout, [], redis_url=redis.url,
                        inspect=lambda c: {**redis.snapshot(), "keys": key_memory(c)})  # fmt: skip
        if watch:
            watch.stop()
    finally:
        server.stop()
    after = r["inspect"]
    n = r["videos"]
    if watch:
        return {"small_videos": n, "small_spider_cpu_s": r["cpu_s"], **watch.per_unit(n)}
    report_keys = {k: round(v / n) for k, v in sorted(after["keys"].items(), key=lambda kv: -kv[1]) if v >= n}
    return {"videos": n, "videos_per_s": r["videos_per_s"], "spider_cpu_s": r["cpu_s"],
            "bytes_per_video_by_key": report_keys,
            "redis_memory_bytes": (after["memory"] - before["memory"]) / n, **delta(before, after, n)}  # fmt: skip




def _csv_rates(text: str) -> dict[str, float]:
    rates = {}
    for row in csv.reader(text.splitlines()):
        if len(row) >= 2 and row[0] != "test":
            try:
                rates[row[0]] = float(row[1])
            except ValueError:
                pass
    return rates


def redis_benchmark(redis: PrivateRedis, requests: int) -> dict:
    """ops/s of the mix's commands on the private server (50 clients, no pipelining)."""
    from crawler.ledger import _RECORD

    base = ["redis-benchmark", "-p", str(redis.port), "-n", str(requests), "-c", "50", "-r", "100000", "--csv"]
    out = subprocess.run(base + ["-t", "ping_mbulk,set,get,hset,sadd,zadd,lpush,rpop"], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    ops = {name.split()[0].lower(): rate for name, rate in _csv_rates(out.stdout).items()}
    entry = json.dumps({"url": "http://127.0.0.1/clip___rand_int__.mp4", "pad": "x" * 1400})  # ~ an item's JSON
    record = json.dumps({"status": "queued", "video_id": "0" * 64, "stage": None, "error": None,
                         "source": "urls", "at": "2026-12-01T00:00:00Z"})  # fmt: skip
    custom = {"xadd": ["XADD", "bench:videos", "MAXLEN", "~", "100000", "*", "item", entry],
              "eval_ledger": ["EVAL", _RECORD, "2", "bench:ledger", "bench:ledger:counts",
                              "http://127.0.0.1/clip___rand_int__.mp4", "queued", record]}  # fmt: skip
    custom["eval_ledger_pipelined_16"] = ["-P", "16"] + custom["eval_ledger"]  # what batching would buy
    for name, command in custom.items():
        out = subprocess.run(base + command, capture_output=True, text=True, timeout=300)
        fields = out.stdout.strip().rsplit(",", 7)  # the test's name is echoed unescaped: read from the end
        try:
            ops[name] = float(fields[-7].strip('"'))
        except (IndexError, ValueError):
            pass
    redis.client.flushdb()
    return ops


def model(sent: dict, ops: dict) -> float | None:
    """Seconds of a saturated Redis per unit: each command sent at the redis-benchmark rate of its
    kind (a script call at the ledger script's rate, the commands it runs included)."""
    kind = {"evalsha": "eval_ledger", "eval": "eval_ledger", "hget": "get", "hexists": "get", "sismember": "get",
            "hset": "hset", "hsetnx": "hset", "hdel": "hset", "hincrby": "hset", "sadd": "sadd", "srem": "sadd",
            "zadd": "zadd", "zrem": "zadd", "zcard": "get", "zrangebyscore": "get", "zscore": "get",
            "lpush": "lpush", "rpush": "lpush", "lpop": "rpop", "rpop": "rpop", "llen": "get", "xadd": "xadd",
            "get": "get", "set": "set", "exists": "get", "expire": "set", "pexpire": "set"}  # fmt: skip
    total = 0.0
    for name, calls in sent.items():
        rate = ops.get(kind.get(name.split("|")[0], "ping_mbulk")) or ops.get("ping_mbulk")
        if not rate:
            return None
        total += calls / rate
    return total


def main(report: Report, args) -> None:
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        report.not_measured("spider processes per Redis", "redis-server / redis-benchmark not installed "
                            "(Debian: redis-server, redis-tools)")  # fmt: skip
        return
    pages = args.pages or (600 if args.quick else 5000)
    clips = args.clips or (30 if args.quick else 200)
    report.figure("machine", cpu_info())
    redis = PrivateRedis()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            page = crawl_pages(redis, pages, Path(tmp), args.timeout)
            video = crawl_videos(redis, clips, Path(tmp), args.timeout)
            # smaller MONITORed passes: round trips, and with the big ones the spider's CPU per unit
            # without its start-up (MONITOR slows the server, not the spider's own work)
            page.update(crawl_pages(redis, max(150, pages // 5), Path(tmp), args.timeout, monitor=True))
            video.update(crawl_videos(redis, max(10, clips // 4), Path(tmp), args.timeout, monitor=True))
        ops = redis_benchmark(redis, args.requests or (10_000 if args.quick else 100_000))
    finally:
        redis.stop()
    report.figure("redis_benchmark_ops_per_s", ops)
    for unit, r, big, small in (("page", page, "pages", "small_pages"), ("video", video, "videos", "small_videos")):
        r["spider_cpu_ms"] = 1000 * (r["spider_cpu_s"] - r["small_spider_cpu_s"]) / max(1, r[big] - r[small])
        report.figure(f"per_{unit}", r)
        spider_rate = 1000 / r["spider_cpu_ms"] if r["spider_cpu_ms"] > 0 else None  # one spider process, one core
        redis_rate = 1000 / r["server_cpu_ms"] if r["server_cpu_ms"] else None
        modelled = model(r["sent_by_command"], ops)
        model_rate = 1 / modelled if modelled else None
        procs = ratio(redis_rate, spider_rate)
        procs_model = ratio(model_rate, spider_rate)
        report.figure(f"{unit}_estimate", {"spider_units_per_s_per_core": spider_rate,
                                           "redis_units_per_s_at_saturation": redis_rate,
                                           "redis_units_per_s_by_benchmark_mix": model_rate,
                                           "spider_processes_per_redis": procs,
                                           "spider_processes_per_redis_by_mix": procs_model})  # fmt: skip
        report.target(f"Redis commands sent per {unit}", r["sent"], None, "(figure)", None, unit="cmds",
                      note=f"{r['commands']:g} with those its Lua scripts run")  # fmt: skip
        report.target(f"Redis server CPU per {unit}", r["server_cpu_ms"] * 1000, None, "(figure)", None, unit="us")
        report.target(f"spider processes one Redis serves ({unit}s)", procs, procs_model, "(figure)", None,
                      unit="procs", note=f"{spider_rate or 0:.0f} {unit}s/s per spider core; Redis saturates at "
                                         f"{redis_rate or 0:,.0f} {unit}s/s (by the benchmark mix: "
                                         f"{model_rate or 0:,.0f})")  # fmt: skip
        top = ", ".join(f"{k} {v:g}" for k, v in list(r["sent_by_command"].items())[:8])
        report.note(f"per {unit}: {r['sent']:g} commands sent ({top}), {r['commands']:g} run in all; "
                    f"Redis memory {r['redis_memory_bytes']:.0f} B per {unit}")  # fmt: skip
    report.note("bytes per video by key: " + ", ".join(f"{k} {v}" for k, v in video["bytes_per_video_by_key"].items()))


def _extra(parser) -> None:
    parser.add_argument("--pages", type=int, default=0, help="pages of the generated site (600 quick, 5000)")
    parser.add_argument("--clips", type=int, default=0, help="ingest clips (30 quick, 200)")
    parser.add_argument("--requests", type=int, default=0, help="redis-benchmark requests per test")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per crawl at most")


if __name__ == "__main__":
    run(main, "scale", __doc__.splitlines()[0], extra=_extra)
