"""Fault tests of the crawl: kill -9 spiders, kill -9 the embedded Valkey, restart an external Redis.

Each crawls a slow generated site (``/slow/<i>.html``: 60 pages, every other one with a video
URL of its own, so 30 videos) through the full item pipelines, breaks something for real
mid-crawl, lets the project carry on, and checks that every video is recorded in the ledger
exactly once (on the workers' stream once at most), none lost, none "seen" but never
recorded, nothing left leased. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

from crawler.connection import _alive, _read_pid, ensure_embedded, stop_embedded
from crawler.keys import RedisKeys
from tests.conftest import PYTHON, ROOT, project_env
from tests.site import CLIPS, SiteHandler

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PAGES = 60
VIDEOS = PAGES // 2
PAGE_DELAY = 0.3  # seconds per page: the crawl takes long enough for a kill to land mid-way


class SlowSite(SiteHandler):
    """The test site plus ``/slow/<i>.html``: page i links to 3i+1..3i+3; even pages show a video."""

    def do_GET(self, head: bool = False):
        m = re.fullmatch(r"/slow/(\d+)\.html", urlparse(self.path).path)
        if not m:
            return super().do_GET(head)
        self._head, self._extra = head, {}
        i = int(m.group(1))
        if i >= PAGES:
            return self._status(404, b"no such page")
        time.sleep(PAGE_DELAY)
        links = "".join(f'<a href="/slow/{j}.html">page {j}</a>' for j in range(3 * i + 1, min(3 * i + 4, PAGES)))
        video = f'<video src="/media/{CLIPS[(i // 2) % len(CLIPS)]}.mp4?v={i}"></video>' if i % 2 == 0 else ""
        body = f"<!doctype html><html><head><title>Slow page {i}</title></head><body>{video}{links}</body></html>"
        return self._status(200, body.encode(), "text/html; charset=utf-8")


@pytest.fixture(scope="module")
def slow_site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSite)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def expected_videos(base: str) -> set[str]:
    return {f"{base}/media/{CLIPS[(i // 2) % len(CLIPS)]}.mp4?v={i}" for i in range(0, PAGES, 2)}


class Spiders:
    """`scrapy crawl web` processes started by a test; every one is gone when the test ends."""

    def __init__(self, tmp_path: Path, env: dict):
        self.tmp_path, self.env, self.procs, self.logs = tmp_path, env, [], []

    def start(self, *args: str, idle_close: int | None = None) -> subprocess.Popen:
        log = self.tmp_path / f"web{len(self.procs)}.log"
        cmd = [PYTHON, "-m", "scrapy", "crawl", "web", *args, "-s", f"LOG_FILE={log}",
               "-s", "TELNETCONSOLE_ENABLED=0", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=2"]  # fmt: skip
        if idle_close:
            cmd += ["-s", f"MAX_IDLE_TIME_BEFORE_CLOSE={idle_close}"]
        err = open(self.tmp_path / f"web{len(self.procs)}.err", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 240) -> str:
        assert proc.wait(timeout=timeout) == 0, self.tail(proc)
        return self.logs[self.procs.index(proc)].read_text()

    def tail(self, proc) -> str:
        i = self.procs.index(proc)
        err = (self.tmp_path / f"web{i}.err").read_text()[-2000:]
        log = self.logs[i].read_text()[-4000:] if self.logs[i].exists() else ""
        return err + log

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def ledger_size(client: redis.Redis, keys: RedisKeys) -> int:
    try:
        return int(client.hlen(keys.ledger))
    except redis.RedisError:  # the server is down for the moment
        return -1


def wait_until(check, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc is None or proc.poll() is None, f"the spider ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def check_nothing_lost(client: redis.Redis, keys: RedisKeys, base: str) -> dict:
    """Every video recorded once, queued once at most, nothing pending or leased; the figures."""
    want = expected_videos(base)
    ledger = {k.decode(): json.loads(v) for k, v in client.hgetall(keys.ledger).items()}
    counts = {k.decode(): int(v) for k, v in client.hgetall(keys.ledger_counts).items() if int(v)}
    assert set(ledger) == want, {"lost": sorted(want - set(ledger)), "extra": sorted(set(ledger) - want)}
    assert sum(counts.values()) == VIDEOS, counts
    assert "failed" not in counts, {u: e for u, e in ledger.items() if e["status"] == "failed"}
    queued = [json.loads(f[b"item"])["url"] for _, f in client.xrange(keys.stream)]
    duplicated = sorted({u for u in queued if queued.count(u) > 1})
    assert not duplicated, duplicated
    # every queued video is on the stream (exact copies travel too, for their provenance)
    assert {u for u, e in ledger.items() if e["status"] == "queued"} <= set(queued) <= want
    seen = {u.decode() for u in client.smembers(RedisKeys.videos_seen("web"))}
    assert seen == want  # seen and recorded are the same set: none "seen but never recorded"
    assert client.hlen(RedisKeys.videos_pending("web")) == 0
    assert not [v for v in client.hvals(keys.seen) if v.startswith(b"pending:")]
    queue = RedisKeys.requests("web")
    for key in (queue, RedisKeys.leased(queue), RedisKeys.leased(RedisKeys.start_urls("web"))):
        assert client.zcard(key) == 0, key
    assert client.llen(RedisKeys.start_urls("web")) == 0
    return {"recorded": len(ledger), "lost": 0, "stream_duplicates": len(duplicated), "states": counts}


def test_a_spider_killed_twice_mid_crawl_loses_no_video(tmp_path, slow_site, redis_url, key_prefix, data_dir):
    client = redis.Redis.from_url(redis_url)
    keys = RedisKeys(key_prefix)
    spiders = Spiders(tmp_path, project_env(REDIS_URL=redis_url, CRAWL_LEASE_SECONDS=2))
    kills = 0
    try:
        first = spiders.start("-a", f"url={slow_site}/slow/0.html", "-a", "depth=10")
        for proc, threshold in ((first, 6), (None, 16)):
            proc = proc or spiders.start(idle_close=6)
            wait_until(lambda: ledger_size(client, keys) >= threshold, proc, 180, f"{threshold} videos recorded")
            assert ledger_size(client, keys) < VIDEOS  # mid-crawl
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            kills += 1
        log = spiders.finish(spiders.start(idle_close=6))
        assert "Traceback" not in log, log[-4000:]
        assert re.search(r"gave \d+ expired lease\(s\) of web:requests back", "".join(
            p.read_text() for p in spiders.logs[1:]))  # fmt: skip
        figures = check_nothing_lost(client, keys, slow_site)
        # a second run yields only what is new: nothing
        log = spiders.finish(spiders.start("-a", f"url={slow_site}/slow/0.html", "-a", "depth=10"))
        assert "item_scraped_count" not in log
        assert ledger_size(client, keys) == VIDEOS
    finally:
        spiders.stop_all()
    print(f"\nspider kills: {kills}, figures: {figures}")


def test_the_embedded_valkey_killed_mid_crawl_comes_back_and_nothing_is_lost(
    tmp_path, slow_site, data_dir, key_prefix, monkeypatch
):
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = ensure_embedded(data_dir)
    root = data_dir / "redis"
    client = redis.Redis.from_url(url, socket_timeout=5)
    keys = RedisKeys(key_prefix)
    spiders = Spiders(tmp_path, project_env())
    try:
        proc = spiders.start("-a", f"url={slow_site}/slow/0.html", "-a", "depth=10")
        wait_until(lambda: ledger_size(client, keys) >= 8, proc, 180, "8 videos recorded")
        pid = _read_pid(root / "server.pid")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), None, 10, "the server to die")
        log = spiders.finish(proc)  # the spider restarts the server itself and carries on
        assert json.loads((root / "server.json").read_text())["url"] == url  # the same port
        assert _read_pid(root / "server.pid") != pid
        assert "Traceback" not in log, log[-4000:]
        redis_lines = [line for line in log.splitlines() if "Redis at" in line]
        assert 1 <= len(redis_lines) <= 3, redis_lines  # restarted (+ unreachable, answers again)
        figures = check_nothing_lost(client, keys, slow_site)
    finally:
        spiders.stop_all()
        stop_embedded(data_dir)
    print(f"\nvalkey kill -9: 1, log lines about Redis {len(redis_lines)}, figures: {figures}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    """A throwaway redis-server on loopback; AOF on so that a restart keeps the crawl's state."""
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
           "--appendfsync", "always", "--dir", str(folder)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: _answers(url), None, 10, "redis-server to start")
    return proc


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_an_external_redis_restarted_mid_crawl_pauses_the_spider_with_two_log_lines(
    tmp_path, slow_site, key_prefix, data_dir
):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    servers = [_redis_server(port, tmp_path)]
    client = redis.Redis.from_url(url, socket_timeout=5)
    keys = RedisKeys(key_prefix)
    spiders = Spiders(tmp_path, project_env(REDIS_URL=url))
    outage = 4.0
    try:
        proc = spiders.start("-a", f"url={slow_site}/slow/0.html", "-a", "depth=10")
        wait_until(lambda: ledger_size(client, keys) >= 8, proc, 180, "8 videos recorded")
        servers[0].terminate()  # a clean stop (SIGTERM): it syncs its AOF and exits
        servers[0].wait(timeout=10)
        time.sleep(outage)
        servers.append(_redis_server(port, tmp_path))
        log = spiders.finish(proc)
        assert "Traceback" not in log, log[-4000:]
        lines = log.splitlines()
        redis_lines = [i for i, line in enumerate(lines) if "Redis at" in line]
        assert len(redis_lines) == 2, [lines[i] for i in redis_lines]
        assert "unreachable" in lines[redis_lines[0]] and "answers again" in lines[redis_lines[1]]
        during = redis_lines[1] - redis_lines[0] - 1  # lines logged while Redis was away
        assert during <= 5, lines[redis_lines[0]:redis_lines[1] + 1]
        figures = check_nothing_lost(client, keys, slow_site)
    finally:
        spiders.stop_all()
        for server in servers:
            if server.poll() is None:
                server.terminate()
                server.wait(timeout=10)
    print(f"\nexternal redis down {outage:g} s: Redis log lines 2, other lines meanwhile {during}, figures: {figures}")
