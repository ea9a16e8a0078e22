"""Memory: direct downloads stream to disk, so a crawl of 8 endless downloads stays small.

A real ``scrapy runspider`` crawl (the project's pipelines) of 8 items on the test site's
``/fail/endless.mp4`` (no length, bytes until the client hangs up) with ``MEDIA_MAX_BYTES``
at 200 MB: each download streams 200 MB to disk before it is refused ``too_large``, and the
crawl process's peak RSS (``VmHWM``, the kernel's own high-water mark, polled while it runs) stays
under 600 MB. Holding bodies in memory (Scrapy's FilesPipeline) peaked at 4.2 GB with 4.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from crawler.ledger import Ledger
from tests.conftest import PYTHON, ROOT, project_env
from tests.pipelines.conftest import SETTINGS, SPIDER

pytestmark = [pytest.mark.faults, pytest.mark.slow]
MAX_BYTES = 200 * 1024 * 1024
DOWNLOADS = 8
RSS_LIMIT_MB = 600


def test_eight_endless_downloads_stay_under_600_mb(crawl_env, tmp_path, redis_client):
    site = crawl_env["site"]
    items = [{"url": f"{site}/fail/endless.mp4?copy={i}", "source": "test", "download_via": "files"}
             for i in range(DOWNLOADS)]  # fmt: skip
    spider = tmp_path / "tiny_spider.py"
    spider.write_text(SPIDER)
    feed = tmp_path / "items.jsonl"
    cmd = [PYTHON, "-m", "scrapy", "runspider", str(spider), "-O", f"{feed}:jsonlines"]
    settings = {**SETTINGS, "MEDIA_MAX_BYTES": str(MAX_BYTES), "DOWNLOAD_TIMEOUT": "240"}
    for key, value in settings.items():
        cmd += ["-s", f"{key}={value}"]
    log = open(tmp_path / "crawl.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=ROOT, env=project_env(TINY_ITEMS=json.dumps(items)),
                            stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    # The crawl's own high-water mark (VmHWM), polled until it exits. Not wait4's ru_maxrss: Linux
    # carries the forking process's RSS over exec into it, so it read ~1 GB whenever this pytest
    # process had models loaded by earlier tests, whatever the crawl did.
    peak_kib = 0
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            peak_kib = max(peak_kib, _vm_hwm_kib(proc.pid))
            time.sleep(0.1)
        proc.wait(10)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "crawl.log").read_text()[-3000:]
    peak_mb = peak_kib / 1024
    rows = [json.loads(line) for line in feed.read_text().splitlines()]
    assert len(rows) == DOWNLOADS
    for row in rows:  # each one streamed past the cap before it was refused
        assert row["status"] == "rejected", row["errors"]
        assert row["errors"]["download"].startswith("too_large: body passed MEDIA_MAX_BYTES")
    assert Ledger(redis_client, crawl_env["prefix"]).counts() == {"rejected": DOWNLOADS}
    print(f"peak RSS with {DOWNLOADS} endless downloads of {MAX_BYTES >> 20} MB each: {peak_mb:.0f} MB")
    assert peak_mb < RSS_LIMIT_MB
    assert not list((crawl_env["data_dir"] / "videos" / "tmp").glob("*.part"))  # staged files removed


def _vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set (``VmHWM`` in /proc/<pid>/status), KiB; 0 once it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
