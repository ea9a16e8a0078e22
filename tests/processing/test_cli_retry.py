"""``python -m processing retry`` sends a failed download back through its spider's queue.

A real crawl of the local test site meets a server that answers 503 once; ``status`` counts the
failure, ``retry`` puts it back in ``web:start_urls`` (its page, depth 0) with its "seen" marks
forgotten, and the next crawl downloads it.
"""

import json
import subprocess

import pytest

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.retry import start_payload
from tests.conftest import PYTHON, ROOT, project_env

pytestmark = pytest.mark.slow


def run(args, env, timeout=300):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def test_retry_requeues_download_failures_through_their_spider(tmp_path, site, redis_client, data_dir, key_prefix):
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, DOWNLOAD_TIMEOUT=10, RETRY_TIMES=0)
    page, video = f"{site}/retry.html", f"{site}/fail/once-retry.mp4"

    def crawl(name):
        run(["-m", "scrapy", "crawl", "web", "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=3", "-O", str(tmp_path / name),
             "-s", f"LOG_FILE={tmp_path / (name + '.log')}"], env)  # fmt: skip
        return [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]

    redis_client.rpush("web:start_urls", json.dumps({"url": page, "meta": {"depth": 0}}))
    [item] = crawl("first.jsonl")
    assert (item["status"], item["errors"]["download"].split(":")[0]) == ("failed", "http_503"), item
    status = json.loads(run(["-m", "processing", "status", "--json"], env))
    assert status["failed"] == 1

    out = run(["-m", "processing", "retry"], env)
    assert out.startswith("requeued 1: 0 failed in the workers (back on the work stream); "
                          "1 failed in the crawl (back in their spiders' queues: web 1)"), out
    assert "scrapy crawl web -s MAX_IDLE_TIME_BEFORE_CLOSE=10" in out
    assert [json.loads(x) for x in redis_client.lrange("web:start_urls", 0, -1)] == [
        {"url": page, "meta": {"depth": 0}}]  # the page it was found on: the video comes back with its metadata
    assert not redis_client.sismember(RedisKeys.videos_seen("web"), video)
    assert Ledger(redis_client, RedisKeys(key_prefix)).get(video)["status"] == "new"
    assert "requeued 0:" in run(["-m", "processing", "retry"], env)  # not twice

    [again] = crawl("again.jsonl")
    assert (again["url"], again["status"], again["page_url"]) == (video, "queued", page), again
    status = json.loads(run(["-m", "processing", "status", "--json"], env))
    assert (status["failed"], status["queued"]) == (0, 1)


@pytest.mark.parametrize("source, url, page, expected", [
    ("web", "https://e.org/v.mp4", "https://e.org/p.html", {"url": "https://e.org/p.html", "meta": {"depth": 0}}),
    ("web", "https://e.org/v.mp4", None, {"url": "https://e.org/v.mp4", "meta": {"depth": 0}}),
    ("ytdlp", "https://www.youtube.com/watch?v=x", "https://www.youtube.com/@c",
     {"url": "https://www.youtube.com/watch?v=x"}),
    ("local", "file:///videos/a.mp4", None, {"url": "file:///videos/a.mp4"}),
    ("urls", "https://e.org/v.mp4", None, {"url": "https://e.org/v.mp4"}),
    ("archive_org", "https://archive.org/download/x/x.mp4", "https://archive.org/details/x",
     {"url": "https://archive.org/details/x"}),
    ("archive_org", "https://archive.org/download/x/x.mp4", None, None),
])  # fmt: skip
def test_each_spider_is_given_what_finds_the_video_again(source, url, page, expected):
    assert start_payload(source, url, page) == expected


def test_commons_failures_go_back_as_one_imageinfo_call():
    got = start_payload("commons", "https://upload.wikimedia.org/x/Bikes.webm",
                        "https://commons.wikimedia.org/wiki/File:Bikes_downhill.webm")
    assert "titles=File%3ABikes+downhill.webm" in got["url"] and "prop=imageinfo" in got["url"]
    assert start_payload("commons", "https://upload.wikimedia.org/x/Bikes.webm", None) is None
