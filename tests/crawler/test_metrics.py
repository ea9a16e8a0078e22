"""The spiders' Prometheus endpoint: a real `scrapy crawl local -s METRICS_PORT=...`, scraped while it runs."""

import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PYTHON, ROOT, project_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float] | None:
    """The samples at /metrics, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}  # fmt: skip


@pytest.mark.slow
def test_a_local_crawl_serves_items_by_state_bytes_and_errors(tmp_path, media, redis_url, key_prefix, data_dir):
    root = tmp_path / "videos"
    root.mkdir()
    clip = media["gradio_a"]
    shutil.copy(clip, root / "original.mp4")
    shutil.copy(clip, root / "same bytes.mp4")  # an exact duplicate
    (root / "fake.mp4").write_text("<html>not a video</html>")  # rejected by the probe
    port = free_port()
    log = tmp_path / "crawl.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", "local", "-a", f"path={root}",
           "-s", f"METRICS_PORT={port}", "-s", "SPIDER_IDLE_CLOSE_SECONDS=4",
           "-s", f"LOG_FILE={log}", "-s", "TELNETCONSOLE_ENABLED=0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=project_env(REDIS_URL=redis_url),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    got = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            got = scrape(port)
            items = {k[1]: v for k, v in (got or {}).items() if k[0] == "videopipe_crawl_items_total"}
            if sum(items.values()) >= 3:
                break
            time.sleep(0.1)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text() if log.exists() else ""
    assert rc == 0, proc.stderr.read()[-3000:] + text[-3000:]
    assert got, "the endpoint never answered while the crawl ran:\n" + text[-3000:]

    spider = ("spider", "local")
    assert got[("videopipe_crawl_items_total", (spider, ("status", "queued")))] == 1
    assert got[("videopipe_crawl_items_total", (spider, ("status", "duplicate")))] == 1
    assert got[("videopipe_crawl_items_total", (spider, ("status", "rejected")))] == 1
    size = clip.stat().st_size
    # both copies were read (sha256 needs the bytes); the fake file too
    assert got[("videopipe_crawl_media_bytes_total", (spider, ("via", "local")))] == 2 * size + len(
        "<html>not a video</html>")
    # pages and response bytes are Scrapy's own stats: the same figures as its closing dump
    dumped = {k: int(v) for k, v in re.findall(r"'([a-z_/]+)': (\d+)", text.split("Dumping Scrapy stats")[-1])}
    assert got[("videopipe_crawl_response_bytes_total", (spider,))] == dumped.get("downloader/response_bytes", 0)
    assert dumped["response_received_count"] >= 1  # the spider's start request
    assert got[("videopipe_crawl_pages_total", (spider,))] == dumped["response_received_count"]
    for kind in ("download", "item", "log", "spider"):
        assert got[("videopipe_crawl_errors_total", (("kind", kind), spider))] == 0
    assert scrape(port) is None  # the server went with the spider


def test_the_extension_is_off_without_a_port_and_a_busy_port_is_a_clear_error():
    from scrapy.exceptions import NotConfigured
    from scrapy.utils.test import get_crawler

    from crawler.metrics import MetricsExtension

    with pytest.raises(NotConfigured):
        MetricsExtension.from_crawler(get_crawler(settings_dict={"METRICS_PORT": 0}))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ValueError, match=f"METRICS_PORT: cannot serve metrics on 127.0.0.1:{port}"):
            MetricsExtension.from_crawler(get_crawler(settings_dict={"METRICS_PORT": port}))
