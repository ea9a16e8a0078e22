"""Hostile input from the web: every bad file and misbehaving server ends in one ledger record with a documented code.

One real crawl (``scrapy runspider`` of the tiny spider, the project's pipelines, real Redis)
over the cases of tests/hostile.py served by a local site, plus the site's failure routes and
hostile servers, plus an "internal" site on another loopback port that the policy does not
allow (``ALLOW_PRIVATE_NETWORKS=127.0.0.1:<site port>``): redirects, playlists and yt-dlp
manifests that point at it must be refused without one request reaching it. The good clips of
the same crawl must all be queued.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote

import pytest

from crawler.errors import is_known
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from tests.hostile import build
from tests.pipelines.conftest import crawl
from tests.site import Site

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def sites(tmp_path):
    """(hostile site serving the cases, internal site no crawl may reach, the cases)."""
    internal = Site()
    internal_url = internal.start()
    cases = build(tmp_path / "files", internal=internal_url)
    hostile = Site(files_dir=tmp_path / "files")
    hostile.start()
    yield hostile, internal, cases
    hostile.stop()
    internal.stop()


def test_every_hostile_input_from_the_web_ends_in_one_record(sites, tmp_path, redis_url, redis_client, key_prefix, data_dir):
    hostile, internal, cases = sites
    base, inside = hostile.url, internal.url
    port = base.rsplit(":", 1)[1]
    expected: dict[str, tuple] = {}
    items = []

    def add(url, want, via="files", what=""):
        items.append({"url": url, "source": "hostile", "download_via": via})
        expected[url] = (*want, what or url)

    for case in cases:
        add(f"{base}/hostile/files/{quote(os.fsencode(case.name), safe='')}", case.web, what=case.what)
    rejected = lambda stage, code: ("rejected", stage, code)  # noqa: E731
    failed = lambda stage, code: ("failed", stage, code)  # noqa: E731
    queued = ("queued", None, None)
    routes = {
        "/hostile/gzip-bomb.mp4": rejected("download", "too_large"),
        "/hostile/bad-gzip.mp4": failed("download", "bad_content_encoding"),
        "/hostile/brotli.mp4": failed("download", "unsupported_encoding"),
        "/hostile/chunked-truncated.mp4": failed("download", "truncated"),
        "/hostile/bad-status": failed("download", "bad_response"),
        "/hostile/header-flood": failed("download", "bad_response"),
        "/hostile/reset": failed("download", "connection_error"),
        "/hostile/redirect?to=/media/bikes.mp4": queued,  # a clip behind a CDN-style redirect
        "/hostile/redirect?n=3&to=/media/gradio_b.mp4": queued,
        f"/hostile/redirect?to={quote(inside + '/media/bikes.mp4', safe='')}": rejected("download", "private_address"),
        "/hostile/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd": rejected("download", "scheme_not_allowed"),
        "/hostile/redirect-loop": failed("download", "too_many_redirects"),
        "/hostile/redirect?n=12&to=/media/gradio_world.mp4": failed("download", "too_many_redirects"),
        f"/hostile/m3u8-as-mp4.mp4?to={quote(inside, safe='')}": rejected("probe", "not_a_video"),
        "/fail/huge.mp4": rejected("download", "too_large"),
        "/fail/endless.mp4": rejected("download", "too_large"),
        "/fail/truncated.mp4": failed("download", "truncated"),
        "/fail/slow.mp4": failed("download", "timeout"),
        "/fail/zero.mp4": failed("download", "empty_file"),
        "/fail/html-as-video.mp4": rejected("probe", "not_a_video"),
        "/fail/404": failed("download", "http_404"),
        "/fail/500": failed("download", "http_500"),
    }
    for path, want in routes.items():
        add(base + path, want)
    internal_port = inside.rsplit(":", 1)[1]
    add(inside + "/media/bikes.mp4", rejected("download", "private_address"), what="the internal site itself")
    add(f"http://[::ffff:127.0.0.1]:{internal_port}/media/bikes.mp4", rejected("download", "private_address"))
    add("file:///etc/passwd", rejected("download", "bad_scheme"))
    add(f"{base}/hostile/hls-ssrf.m3u8?to={quote(inside, safe='')}", rejected("download", "private_address"),
        via="ytdlp", what="HLS whose segments are on the internal site")  # fmt: skip
    add(f"{base}/hls/bbb/index.m3u8", queued, via="ytdlp", what="a good HLS stream")

    feed, log = crawl(tmp_path, items, env={"ALLOW_PRIVATE_NETWORKS": f"127.0.0.1:{port}"}, timeout=300,
                      MEDIA_MAX_REDIRECTS=10)  # fmt: skip

    assert internal.hits == [], f"the internal site was reached: {internal.hits}"
    ledger = Ledger(redis_client, key_prefix)
    recorded = dict(ledger.entries())
    assert set(recorded) == set(expected), "every item has one ledger record, nothing else has one"
    assert sum(ledger.counts().values()) == len(expected)
    wrong = {}
    for url, (status, stage, code, what) in expected.items():
        row, entry = feed.get(url), recorded[url]
        got = (entry["status"], entry["stage"], (entry["error"] or "").split(":")[0] or None)
        if got != (status, stage, code) or row is None or row["status"] != status:
            wrong[what] = (got, row and row["errors"])
        if entry["error"]:
            assert is_known(got[2]) and got[2] != "internal_error", (what, entry)
    assert not wrong, wrong
    # the good clips are all on the workers' stream
    streamed = {json.loads(e[b"item"])["url"] for _, e in redis_client.xrange(RedisKeys(key_prefix).stream)}
    good = {url for url, want in expected.items() if want[0] == "queued"}
    assert good <= streamed and len(good) >= 20
    assert "Traceback" not in log, log[-4000:]
    print(f"hostile web inputs: {len(expected)}; codes: "
          f"{sorted({w[2] for w in expected.values() if w[2]})}")  # fmt: skip
