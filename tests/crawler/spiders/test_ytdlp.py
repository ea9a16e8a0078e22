"""YtdlpSpider in a real `scrapy crawl ytdlp` process: pages, playlists, recorded failures."""

import json

import pytest
import redis

from tests.crawler.spiders.conftest import by_path, crawl


@pytest.mark.slow
def test_ytdlp_spider_resolves_pages_playlists_and_records_failures(tmp_path, web_site, redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    for path in ("/video-tag.html", "/playlist.html", "/media/bikes.mp4", "/fail/404"):
        client.rpush("ytdlp:start_urls", json.dumps({"url": web_site + path}))
    client.rpush("ytdlp:start_urls", "file:///etc/passwd")
    items, _, log = crawl(tmp_path, "ytdlp", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2"],
                          REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert all(i["source"] == "ytdlp" and i["download_via"] == "ytdlp" for i in items)

    single = got["/video-tag.html"]
    assert single["status"] == "new" and single["title"].startswith("Big Buck Bunny (video tag)")
    assert single["extractor"] in ("Generic", "HTML5MediaEmbed")  # yt-dlp's generic extractors
    assert single["platform_id"].startswith(single["extractor"] + ":")
    direct = got["/media/bikes.mp4"]
    assert direct["status"] == "new" and direct["platform_id"] == "Generic:bikes"
    playlist = [u for u in got if "?pl=" in u]
    assert sorted(playlist) == ["/media/gradio_a.mp4?pl=1", "/media/gradio_b.mp4?pl=2",
                                "/media/gradio_world.mp4?pl=3"]  # fmt: skip
    assert all(got[u]["page_url"] == f"{web_site}/playlist.html" for u in playlist)

    failed = got["/fail/404"]
    assert failed["status"] == "failed" and failed["errors"]["resolve"].startswith("unavailable")
    assert got["file:///etc/passwd"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert len(items) == 7
    assert "'spiders/ytdlp/playlists': 1" in log


def test_ytdlp_error_codes():
    from crawler.spiders.ytdlp import error_code

    assert error_code(Exception("ERROR: Unsupported URL: https://x")) == "unsupported_url"
    assert error_code(Exception("ERROR: [youtube] x: Video unavailable")) == "unavailable"
    assert error_code(Exception("ERROR: Private video. Sign in")) == "login_required"
    assert error_code(Exception("weird")) == "extractor_error"
