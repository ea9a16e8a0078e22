"""The item pipelines in a real ``scrapy runspider`` crawl over the local site, with real Redis.

Every failure route of the site ends in its recorded state (feed, ledger, stream, stats); a
second crawl on the same Redis names what the first one found.
"""

from __future__ import annotations

import json
from pathlib import Path

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from tests.pipelines.conftest import crawl


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
    # an mp4's first 4 KiB then garbage, shorter than its mdat box says: cut off
    corrupt_status, corrupt_errors = state("/fail/corrupt.mp4")
    assert corrupt_status == "failed" and corrupt_errors["probe"].split(":")[0] == "truncated"
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
    entries = [json.loads(e[b"item"]) for _, e in redis_client.xrange(RedisKeys(crawl_env["prefix"]).stream)]
    # the stream holds the queued videos, and a provenance notice per byte copy (crawler/provenance.py)
    assert sorted(i["url"] for i in entries if i["status"] == "queued") == sorted(queued)
    assert all(i["duplicate_of"] == i["video_id"] for i in entries if i["status"] != "queued")
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
    assert redis_client.xlen(RedisKeys(crawl_env["prefix"]).stream) == 1
