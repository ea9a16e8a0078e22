"""yt-dlp downloads under netguard: manifests, segments and redirects of an internal host are refused.

The download pipeline in-process runs the real guarded yt-dlp child (``crawler.ytdlp_guard``)
against the test site, with an "internal" site on another loopback port. With the policy
``127.0.0.1:<site port>`` an HLS manifest whose segments live on the internal site, or a
redirect to it, ends ``rejected`` with netguard's code and the internal site sees no request;
with both ports allowed the same manifest downloads (so the route does reach the internal host).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from crawler.items import VideoItem
from pipelines.download import DownloadPipeline
from tests.pipelines.conftest import project_crawler, run_item
from tests.site import Site

pytestmark = pytest.mark.faults


@pytest.fixture
def internal():
    site = Site()
    site.start()
    yield site
    site.stop()


def download(url: str, policy: str, prefix: str, data_dir) -> VideoItem:
    crawler = project_crawler(KEY_PREFIX=prefix, ALLOW_PRIVATE_NETWORKS=policy, YTDLP_TIMEOUT=60,
                              FILES_STORE=str(data_dir / "videos"))  # fmt: skip
    pipeline = DownloadPipeline.from_crawler(crawler)
    try:
        return run_item(pipeline, VideoItem(url=url, source="t", download_via="ytdlp"))
    finally:
        pipeline.close_spider()


def port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_hls_segments_on_an_internal_host_are_refused(site, internal, redis_url, key_prefix, data_dir):
    manifest = f"{site}/hostile/hls-ssrf.m3u8?to={quote(internal.url, safe='')}"
    item = download(manifest, f"127.0.0.1:{port(site)}", key_prefix, data_dir)
    assert item.status == "rejected", item.errors
    assert item.errors["download"].startswith(f"private_address: yt-dlp request to 127.0.0.1:{port(internal.url)}")
    assert internal.hits == [] and item.path is None
    assert not list((data_dir / "videos").rglob("*.ts")) and not list((data_dir / "videos" / "full").glob("*"))

    # the control: the same manifest with the internal port allowed is fetched from there
    allowed = download(manifest + "&again=1", f"127.0.0.1:{port(site)},127.0.0.1:{port(internal.url)}",
                       key_prefix, data_dir)  # fmt: skip
    assert allowed.status == "new" and allowed.size_bytes > 0, allowed.errors
    assert any(hit.startswith("/hls/bbb/seg") for hit in internal.hits)


def test_a_redirect_to_an_internal_host_is_refused(site, internal, redis_url, key_prefix, data_dir):
    url = f"{site}/hostile/redirect?to={quote(internal.url + '/hls/bbb/index.m3u8', safe='')}"
    item = download(url, f"127.0.0.1:{port(site)}", key_prefix, data_dir)
    assert item.status == "rejected" and item.errors["download"].startswith("private_address"), item.errors
    assert internal.hits == []
