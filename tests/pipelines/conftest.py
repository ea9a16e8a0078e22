"""What the pipeline tests share: a tiny spider through the real ITEM_PIPELINES; crawlers in-process.

``crawl()`` runs a ``scrapy runspider`` of a tiny spider (written to a temp file) that yields
the VideoItems a test gives it; the project's settings and ITEM_PIPELINES run unchanged, except
the scheduler (Scrapy's own, so these tests do not depend on the spiders' Redis queue) and short
limits (timeouts, sizes, retries) so that every failure route ends quickly.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, project_env

SPIDER = '''
import json, os
import scrapy
from crawler.items import VideoItem


class TinySpider(scrapy.Spider):
    """Yields the VideoItems described in $TINY_ITEMS (a JSON list of field dicts)."""

    name = "tiny"

    async def start(self):
        for fields in json.loads(os.environ["TINY_ITEMS"]):
            yield VideoItem(**fields)
'''

SETTINGS = {
    "SCHEDULER": "scrapy.core.scheduler.Scheduler",
    "DUPEFILTER_CLASS": "scrapy.dupefilters.RFPDupeFilter",
    "DOWNLOAD_TIMEOUT": "3",
    "RETRY_ENABLED": "0",
    "ROBOTSTXT_OBEY": "0",
    "MEDIA_MAX_BYTES": str(5 * 1024 * 1024),
    "MEDIA_MIN_WIDTH": "200",  # carphone_pristine (176x144) is too_small
    "MEDIA_TIMEOUT": "20",
    "YTDLP_TIMEOUT": "60",
    "LOG_LEVEL": "INFO",
}


def crawl(tmp_path: Path, items: list[dict], name: str = "items", env: dict | None = None,
          timeout: float = 120, **settings) -> tuple[dict, str]:
    """Run the tiny spider over ``items``; return ({url: feed item}, log text).

    ``settings`` override ``SETTINGS`` (``-s``); ``env`` adds to the subprocess environment.
    """
    spider = tmp_path / "tiny_spider.py"
    spider.write_text(SPIDER)
    feed = tmp_path / f"{name}.jsonl"
    cmd = [PYTHON, "-m", "scrapy", "runspider", str(spider), "-O", f"{feed}:jsonlines"]
    for key, value in {**SETTINGS, **settings}.items():
        cmd += ["-s", f"{key}={value}"]
    env = project_env(TINY_ITEMS=json.dumps(items), **(env or {}))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    (tmp_path / f"{name}.log").write_text(done.stderr)  # kept for a failing test's reader
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in feed.read_text().splitlines() if line.strip()]
    return {row["url"]: row for row in rows}, done.stderr


@pytest.fixture
def crawl_env(redis_url, key_prefix, data_dir, site):
    """What a pipeline crawl runs against: the test site, a fresh data dir, a key prefix."""
    return {"site": site, "data_dir": data_dir, "prefix": key_prefix}


def project_crawler(**overrides):
    """A Scrapy crawler (no engine) with the project's settings and ``overrides``."""
    from scrapy.utils.test import get_crawler

    import settings

    values = {k: getattr(settings, k) for k in dir(settings) if k.isupper()}
    values.update(overrides)
    return get_crawler(settings_dict=values)


def run_item(pipeline, item):
    """One item through one pipeline's ``process_item``."""
    return asyncio.run(pipeline.process_item(item))
