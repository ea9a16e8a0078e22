"""What the spider tests share: `scrapy crawl` run like a user, and the local site's base URL."""

import json
import re
import subprocess

import pytest

from tests.conftest import PYTHON, ROOT, project_env


@pytest.fixture(scope="module")
def web_site(site):
    """The local test site (tests/site.py), without a trailing slash."""
    return site.rstrip("/")


def crawl(tmp_path, spider, *args, settings=(), timeout=120, **env):
    """Run `scrapy crawl <spider>` like a user; return (items, crawled URLs, log text)."""
    out = tmp_path / f"{spider}-items.jsonl"
    log = tmp_path / f"{spider}.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", spider, *args, "-O", str(out),
           "-s", "ITEM_PIPELINES={}", "-s", "LOG_LEVEL=DEBUG", "-s", f"LOG_FILE={log}",
           "-s", "TELNETCONSOLE_ENABLED=0"]  # fmt: skip
    for s in settings:
        cmd += ["-s", s]
    proc = subprocess.run(cmd, cwd=ROOT, env=project_env(**env), timeout=timeout,
                          capture_output=True, text=True)  # fmt: skip
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + text[-3000:]
    assert "Traceback" not in text, text[-5000:]
    items = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    crawled = re.findall(r"Crawled \(\d+\) <GET ([^>]+)>", text)
    return items, crawled, text


def by_path(items, site):
    """Items keyed by URL with the site's origin cut off (URLs must be unique)."""
    urls = [i["url"] for i in items]
    assert len(urls) == len(set(urls)), sorted(u for u in urls if urls.count(u) > 1)
    return {i["url"].replace(site, ""): i for i in items}
