"""The item pipelines in a real ``scrapy runspider`` crawl over the local site, with real Redis.

A tiny spider of this module's own (written to a temp file) yields VideoItems for the URLs
a test gives it; the project's settings and ITEM_PIPELINES run unchanged, except the
scheduler (Scrapy's own, so this test does not depend on the spiders' Redis queue) and
short limits (timeouts, sizes, retries) so that every failure route ends quickly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from crawler.ledger import Ledger
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


def crawl(tmp_path: Path, items: list[dict], name: str = "items") -> tuple[dict, str]:
    """Run the tiny spider over ``items``; return ({url: feed item}, log text)."""
    spider = tmp_path / "tiny_spider.py"
    spider.write_text(SPIDER)
    feed = tmp_path / f"{name}.jsonl"
    cmd = [PYTHON, "-m", "scrapy", "runspider", str(spider), "-O", f"{feed}:jsonlines"]
    for key, value in SETTINGS.items():
        cmd += ["-s", f"{key}={value}"]
    env = project_env(TINY_ITEMS=json.dumps(items))
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    (tmp_path / f"{name}.log").write_text(done.stderr)  # kept for a failing test's reader
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in feed.read_text().splitlines() if line.strip()]
    return {row["url"]: row for row in rows}, done.stderr


@pytest.fixture
def crawl_env(redis_url, key_prefix, data_dir, site):
    return {"site": site, "data_dir": data_dir, "prefix": key_prefix}


def test_every_route_ends_in_its_recorded_state(crawl_env, redis_client, tmp_path, media):
    site = crawl_env["site"]
    local = crawl_env["data_dir"] / "local-copy.mp4"
    local.write_bytes(media["gradio_a"].read_bytes())

    def web(path, **extra):
        return {"url": site + path, "source": "test", "download_via": "files", **extra}

    items = [
        web("/media/bikes.mp4", title="bikes"),
        web("/media/bikes.mp4?mirror=1"),  # same bytes, another URL -> sha256 duplicate
        web("/media/carphone_pristine.mp4"),  # 176x144 -> too_small
        web("/fail/wrong-type.mp4"),  # a real mp4 as text/plain -> queued
        web("/fail/404"),
        web("/fail/500"),
        web("/fail/slow.mp4"),
        web("/fail/truncated.mp4"),
        web("/fail/html-as-video.mp4"),
        web("/fail/huge.mp4"),
        web("/fail/endless.mp4"),
        web("/fail/zero.mp4"),
        web("/fail/corrupt.mp4"),
        web("/media/bigbuckbunny.mp4", platform_id="Test:bbb"),
        web("/media/bigbuckbunny.mp4?other-page=1", platform_id="Test:bbb"),  # same platform id
        {"url": "file:///etc/passwd", "source": "test", "download_via": "files"},
        {"url": "http://127.0.0.1:1/refused.mp4", "source": "test", "download_via": "files"},
        {"url": f"file://{local}", "source": "local", "download_via": "local", "path": str(local)},
        {"url": site + "/hls/bbb/index.m3u8", "source": "test", "download_via": "ytdlp"},
    ]
    feed, log = crawl(tmp_path, items)

    def state(path):
        row = feed[path if "://" in path else site + path]
        return row["status"], row["errors"]

    # every item is in the feed with its status: nothing dropped
    assert len(feed) == len(items)
    # the same bytes from two URLs (fetched concurrently): one queued, the other its duplicate
    pair = sorted((feed[site + "/media/bikes.mp4"], feed[site + "/media/bikes.mp4?mirror=1"]),
                  key=lambda row: row["status"], reverse=True)  # fmt: skip
    bikes, mirror = pair
    assert bikes["status"] == "queued" and bikes["video_id"] == bikes["sha256"]
    assert (bikes["width"], bikes["height"], bikes["video_codec"]) == (640, 272, "h264")
    assert len(bikes["phash"]) == 16 and Path(bikes["path"]).is_file()
    assert Path(bikes["path"]).parent.parent == crawl_env["data_dir"] / "videos"
    assert mirror["status"] == "duplicate" and mirror["duplicate_of"] == bikes["video_id"]
    carphone_status, carphone_errors = state("/media/carphone_pristine.mp4")
    assert carphone_status == "rejected" and carphone_errors["filters"].startswith("too_small")
    assert state("/fail/wrong-type.mp4")[0] == "queued"
    expected = {
        "/fail/404": ("failed", "download", "http_404"),
        "/fail/500": ("failed", "download", "http_500"),
        "/fail/slow.mp4": ("failed", "download", "timeout"),
        "/fail/truncated.mp4": ("failed", "download", "truncated"),
        "/fail/html-as-video.mp4": ("rejected", "probe", "not_a_video"),
        "/fail/huge.mp4": ("rejected", "download", "too_large"),
        "/fail/endless.mp4": ("rejected", "download", "too_large"),
        "/fail/zero.mp4": ("failed", "download", "empty_file"),
        "file:///etc/passwd": ("rejected", "download", "bad_scheme"),
        "http://127.0.0.1:1/refused.mp4": ("failed", "download", "connection_refused"),
    }
    ledger = Ledger(redis_client, crawl_env["prefix"])
    for path, (status, stage, code) in expected.items():
        got_status, errors = state(path)
        assert got_status == status, (path, errors)
        assert errors[stage].split(":")[0] == code, (path, errors)
        url = path if "://" in path else site + path
        entry = ledger.get(url)
        assert entry, f"no ledger entry for {url} (was Redis db flushed meanwhile?)"
        assert entry["status"] == status and entry["stage"] == stage
        assert entry["error"].split(":")[0] == code
    corrupt_status, corrupt_errors = state("/fail/corrupt.mp4")
    assert corrupt_status == "rejected"
    assert corrupt_errors["probe"].split(":")[0] in {"not_a_video", "undecodable"}
    # the platform id claims the video once, whatever URL it comes from
    bbb = [feed[site + "/media/bigbuckbunny.mp4"], feed[site + "/media/bigbuckbunny.mp4?other-page=1"]]
    assert sorted(r["status"] for r in bbb) == ["duplicate", "queued"]
    local_row = feed[f"file://{local}"]
    assert local_row["status"] == "queued" and local_row["size_bytes"] == local.stat().st_size
    hls = feed[site + "/hls/bbb/index.m3u8"]
    assert hls["status"] == "queued", hls["errors"]
    assert Path(hls["path"]).name.startswith(hls["sha256"]) and hls["duration"] > 4
    # the queued ones are on the workers' stream, once each
    queued = {u for u, r in feed.items() if r["status"] == "queued"}
    entries = redis_client.xrange(f"{crawl_env['prefix']}:videos")
    assert sorted(json.loads(e[b"item"])["url"] for _, e in entries) == sorted(queued)
    counts = ledger.counts()
    assert sum(counts.values()) == len(items) and counts["queued"] == len(queued)
    # outcomes are counted in Scrapy's stats
    for stat in ("pipelines/download/http_404", "pipelines/probe/not_a_video",
                 "pipelines/dedup/duplicate", "pipelines/handoff/queued"):  # fmt: skip
        assert f"'{stat}'" in log


def test_a_second_crawl_names_what_the_first_one_found(crawl_env, tmp_path, redis_client):
    """URLs seen by another crawl process (same Redis, same prefix) are duplicates with an id."""
    site = crawl_env["site"]
    items = [{"url": site + "/media/gradio_b.mp4", "source": "test", "download_via": "files"}]
    first, _ = crawl(tmp_path, items, "first")
    second, _ = crawl(tmp_path, items, "second")
    url = site + "/media/gradio_b.mp4"
    assert first[url]["status"] == "queued"
    assert second[url]["status"] == "duplicate"
    assert second[url]["duplicate_of"] == first[url]["video_id"]
    # the URL keeps its real state in the ledger; the stream got it once
    assert Ledger(redis_client, crawl_env["prefix"]).get(url)["status"] == "queued"
    assert redis_client.xlen(f"{crawl_env['prefix']}:videos") == 1


# -- single pipelines in-process (scrapy.utils.test.get_crawler, no engine needed) ---------
def project_crawler(**overrides):
    from scrapy.utils.test import get_crawler

    import settings

    values = {k: getattr(settings, k) for k in dir(settings) if k.isupper()}
    values.update(overrides)
    return get_crawler(settings_dict=values)


def run_item(pipeline, item):
    import asyncio

    return asyncio.run(pipeline.process_item(item))


def test_ytdlp_refuses_private_hosts_unless_allowed(redis_url, key_prefix, data_dir):
    from crawler.items import VideoItem
    from pipelines.download import DownloadPipeline

    crawler = project_crawler(ALLOW_PRIVATE_NETWORKS=False, KEY_PREFIX=key_prefix)
    pipeline = DownloadPipeline.from_crawler(crawler)
    item = run_item(pipeline, VideoItem(url="http://127.0.0.1:9/v.m3u8", source="t",
                                        download_via="ytdlp"))  # fmt: skip
    assert item.status == "rejected"
    assert item.errors["download"].startswith("private_address")
    assert crawler.stats.get_value("pipelines/download/private_address") == 1


def test_ytdlp_failure_is_recorded_and_releases_the_claim(redis_url, key_prefix, data_dir, site):
    from crawler.items import VideoItem
    from pipelines.download import DownloadPipeline

    crawler = project_crawler(ALLOW_PRIVATE_NETWORKS=True, KEY_PREFIX=key_prefix, YTDLP_TIMEOUT=60)
    pipeline = DownloadPipeline.from_crawler(crawler)
    url = site + "/fail/404"
    item = run_item(pipeline, VideoItem(url=url, source="t", download_via="ytdlp"))
    assert item.status == "failed" and item.errors["download"].startswith("ytdlp_error")
    again = run_item(pipeline, VideoItem(url=url, source="t", download_via="ytdlp"))
    assert again.status == "failed"  # retried, not a "duplicate" of a failure


def test_filters_reject_with_reasons(key_prefix):
    from crawler.items import VideoItem
    from pipelines.filters import FiltersPipeline

    crawler = project_crawler(MEDIA_MIN_DURATION=2, MEDIA_MAX_DURATION=60, MEDIA_MIN_WIDTH=100,
                              MEDIA_MIN_HEIGHT=200, MEDIA_ALLOWED_CODECS=["h264", "vp9"])  # fmt: skip
    pipeline = FiltersPipeline.from_crawler(crawler)

    def verdict(**probe):
        fields = {"duration": 10.0, "width": 640, "height": 360, "video_codec": "h264", **probe}
        item = run_item(pipeline, VideoItem(url="http://x/v.mp4", source="t", **fields))
        return item.status, item.errors.get("filters", "").split(":")[0]

    assert verdict() == ("new", "")
    assert verdict(duration=1.0) == ("rejected", "too_short")
    assert verdict(duration=61.0) == ("rejected", "too_long")
    assert verdict(width=90) == ("rejected", "too_small")
    assert verdict(video_codec="mpeg4") == ("rejected", "codec_not_allowed")
    assert verdict(width=360, height=150) == ("rejected", "too_small")
    assert verdict(width=360, height=150, rotation=90) == ("new", "")  # displayed 150x360
    assert crawler.stats.get_value("pipelines/filters/too_long") == 1
    decided = VideoItem(url="http://x/d.mp4", source="t", duration=0.1, status="failed")
    assert run_item(pipeline, decided).errors == {}  # decided items are skipped


def test_bad_config_is_refused():
    from pipelines.filters import FiltersPipeline

    with pytest.raises(ValueError, match="MEDIA_MIN_DURATION"):
        FiltersPipeline.from_crawler(project_crawler(MEDIA_MIN_DURATION=10, MEDIA_MAX_DURATION=5))


def test_site_routes_a_browser_would_see(site, media):
    import urllib.request

    def get(path, **headers):
        request = urllib.request.Request(site + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    status, headers, body = get("/media/bikes.mp4", Range="bytes=10-19")
    assert status == 206 and body == media["bikes"].read_bytes()[10:20]
    assert headers["Content-Range"].endswith(f"/{media['bikes'].stat().st_size}")
    assert get("/fail/404")[0] == 404 and get("/fail/500")[0] == 500
    assert get("/fail/wrong-type.mp4")[1]["Content-Type"] == "text/plain"
    status, _, body = get("/gen/0.html?n=7")
    assert status == 200 and b'href="/gen/1.html?n=7"' in body and b"<video" in body
    assert get("/gen/7.html?n=7")[0] == 404
    status, _, body = get("/hls/bbb/index.m3u8")
    assert status == 200 and b"#EXTM3U" in body
    assert get("/hls/bbb/../../etc/passwd")[0] == 404
    status, headers, _ = get("/optout-header/page.html")
    assert status == 200 and headers["X-Robots-Tag"] == "noai"
    assert "X-Robots-Tag" not in get("/index.html")[1]
