"""The Redis behaviour every spider shares (crawler/spiders/base.py), as users run it."""

import json
import re
import subprocess

import pytest
import redis

from crawler.keys import RedisKeys
from tests.conftest import PYTHON, ROOT, project_env
from tests.crawler.spiders.conftest import by_path, crawl


def test_scrapy_list_names_every_source():
    proc = subprocess.run([PYTHON, "-m", "scrapy", "list"], cwd=ROOT, env=project_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.split() == ["archive_org", "commons", "local", "urls", "web", "ytdlp"], proc.stderr[-2000:]


@pytest.mark.slow
def test_web_spider_consumes_json_and_plain_payloads_from_redis(tmp_path, web_site, redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    client.lpush("web:start_urls", json.dumps({"url": f"{web_site}/deep/level1.html", "meta": {"depth": 0}}))
    client.lpush("web:start_urls", f"{web_site}/twitter.html")
    client.lpush("web:start_urls", '{"no": "url"}')
    items, crawled, log = crawl(tmp_path, "web", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2"],
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert set(got) == {"/media/gradio_world.mp4?depth=2", "/media/gradio_a.mp4"}
    assert f"{web_site}/deep/level2.html" not in crawled  # depth 0: links not followed
    assert client.llen("web:start_urls") == 0
    assert "'spiders/web/bad_payload': 1" in log


@pytest.mark.slow
def test_two_processes_on_one_redis_share_one_crawl(tmp_path, web_site, redis_url, key_prefix, data_dir):
    """Two `scrapy crawl web` processes, full item pipelines: every page fetched once, every
    video enqueued once on the workers' stream."""
    n = 40  # pages of the generated tree; depth 3 reaches them all
    env = project_env(REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)
    procs, logs = [], []
    for k, args in enumerate([[], ["-a", f"url={web_site}/gen/0.html?n={n}", "-a", "depth=4"]]):
        log = tmp_path / f"web{k}.log"
        logs.append(log)
        cmd = [PYTHON, "-m", "scrapy", "crawl", "web", *args, "-O", str(tmp_path / f"items{k}.jsonl"),
               "-s", "LOG_LEVEL=DEBUG", "-s", f"LOG_FILE={log}", "-s", "TELNETCONSOLE_ENABLED=0",
               "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=4",
               # slow enough (>= 12 s for the tree) that the second process joins in
               "-s", "DOWNLOAD_DELAY=0.3", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]

    crawled = [u for log in logs for u in re.findall(r"Crawled \(\d+\) <GET ([^>]+)>", log.read_text())]
    pages = [u for u in crawled if "/gen/" in u]
    assert len(pages) == len(set(pages)) == n
    for log in logs:  # both processes took part
        assert re.search(r"Crawled \(200\) <GET [^>]+/gen/", log.read_text()), log.name
    items = [json.loads(line) for k in range(2) for line in (tmp_path / f"items{k}.jsonl").read_text().splitlines()]
    urls = [i["url"] for i in items]
    assert len(urls) == len(set(urls)) == 6  # the tree shows each of the 6 clips, many times
    entries = redis.Redis.from_url(redis_url).xrange(RedisKeys(key_prefix).stream)
    queued = [json.loads(fields[b"item"])["url"] for _, fields in entries]
    assert len(queued) == len(set(queued))
    assert sorted(queued) == sorted(i["url"] for i in items if i["status"] == "queued")
    assert queued  # at least the distinct clips made it to the workers' stream
