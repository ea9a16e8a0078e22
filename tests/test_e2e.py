"""The whole path on the embedded default, as `make demo` runs it: no REDIS_URL, no ES, no GPU.

`scrapy crawl web` over the local site (every pipeline) -> `python -m processing work
--until-empty` (real Ray, real stages) -> `status --json` and `search --json`; every video the
crawl found ends in exactly one recorded state, and what was kept is searchable.
"""

import json
import subprocess

import pytest
import redis

from crawler.ledger import Ledger
from tests.conftest import PYTHON, ROOT, project_env

pytestmark = pytest.mark.slow


def run(args, env, timeout=600):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_crawl_to_searchable_catalogue_on_embedded_parts(tmp_path, site, embedded_redis, data_dir,
                                                         key_prefix):  # fmt: skip
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, DOWNLOAD_TIMEOUT=3,
                      RETRY_TIMES=0, LABELERS="imagenet,faces")  # fmt: skip
    env.pop("REDIS_URL", None)
    feed = tmp_path / "items.jsonl"
    run(["-m", "scrapy", "crawl", "web", "-a", f"url={site}/", "-a", "depth=2", "-O", str(feed),
         "-s", f"LOG_FILE={tmp_path / 'crawl.log'}"], env)  # fmt: skip
    items = [json.loads(line) for line in feed.read_text().splitlines()]
    assert items, (tmp_path / "crawl.log").read_text()[-3000:]

    # The crawl used the embedded server of this data dir, and recorded every video it found.
    ledger = Ledger(redis.Redis.from_url(embedded_redis), prefix=key_prefix)
    for item in items:
        entry = ledger.get(item["url"])
        assert entry is not None and entry["status"] in {"queued", "duplicate", "rejected", "failed"}
    queued = {i["video_id"] for i in items if i["status"] == "queued"}
    assert len(queued) >= 4  # the site's distinct clips

    run(["-m", "processing", "work", "--until-empty", "--no-progress"], env)
    status = json.loads(run(["-m", "processing", "status", "--json"], env))
    counts = ledger.counts()
    assert counts.get("queued", 0) == 0, counts  # every queued video was processed
    processed = counts.get("indexed", 0)
    assert processed >= 3 and status["indexed"] == processed, (status, counts)
    assert sum(counts.values()) == len({i["url"] for i in items})  # one state per video URL

    # Kept videos are searchable, with labels and the model that made them.
    hits = json.loads(run(["-m", "processing", "search", "", "--json"], env))
    kept = {h["video_id"] for h in hits["hits"]}
    assert len(kept) == processed and kept <= queued
    doc = hits["hits"][0]["doc"]
    assert doc["labels"]["imagenet"]["model"] and doc["embedding_model"]
