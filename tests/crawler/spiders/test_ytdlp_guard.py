"""YtdlpSpider's resolve step under netguard: yt-dlp's own requests (pages, redirects) pass the guard.

A real ``scrapy crawl ytdlp`` with ``ALLOW_PRIVATE_NETWORKS=127.0.0.1:<site port>``: a start URL on
the site that redirects yt-dlp to an "internal" site on another port is rejected at stage
``resolve`` with ``private_address`` and the internal site sees no request; the same redirect to
a page of the site itself resolves.
"""

import json
from urllib.parse import quote

import pytest
import redis

from tests.crawler.spiders.conftest import crawl
from tests.site import Site

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_resolve_refuses_what_yt_dlp_is_redirected_to(tmp_path, web_site, redis_url, key_prefix):
    internal = Site()
    internal.start()
    try:
        refused = f"{web_site}/hostile/redirect?to={quote(internal.url + '/video-tag.html', safe='')}"
        fine = f"{web_site}/hostile/redirect?to=%2Fvideo-tag.html"
        client = redis.Redis.from_url(redis_url)
        for url in (refused, fine):
            client.rpush("ytdlp:start_urls", json.dumps({"url": url}))
        items, _, log = crawl(tmp_path, "ytdlp", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2"], REDIS_URL=redis_url,
                              ALLOW_PRIVATE_NETWORKS=f"127.0.0.1:{web_site.rsplit(':', 1)[1]}")  # fmt: skip
    finally:
        internal.stop()
    got = {i["url"]: i for i in items}
    assert got[refused]["status"] == "rejected"
    assert got[refused]["errors"]["resolve"].startswith("private_address: yt-dlp request to 127.0.0.1:")
    assert internal.hits == []
    resolved = [i for i in items if i["url"] != refused]
    assert [i["status"] for i in resolved] == ["new"] and resolved[0]["title"].startswith("Big Buck Bunny")
    assert "'spiders/ytdlp/resolve_refused/private_address': 1" in log
