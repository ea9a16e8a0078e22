"""WebSpider in real `scrapy crawl web` processes over the local test site, with real Redis."""

import pytest

from tests.crawler.spiders.conftest import by_path, crawl


@pytest.mark.slow
def test_web_crawl_finds_every_pattern_once(tmp_path, web_site, redis_url, key_prefix):
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/index.html",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)

    bbb = got["/media/bigbuckbunny.mp4"]
    assert (bbb["title"], bbb["uploader"], bbb["download_via"], bbb["source"], bbb["status"]) == (
        "Big Buck Bunny (video tag)", "Blender Foundation", "files", "web", "new")
    assert bbb["thumbnail"] == f"{web_site}/media/bbb-poster.jpg"
    assert bbb["page_url"] == f"{web_site}/video-tag.html"
    assert got["/media/bikes.mp4"]["title"] == "Bikes (source tag)"
    og = got["/media/carphone_pristine.mp4"]
    assert (og["title"], og["description"], og["duration_hint"]) == (
        "Carphone (Open Graph)", "The carphone test sequence.", 12.0)
    assert got["/media/gradio_a.mp4"]["title"] == "Gradio A (Twitter card)"
    ld = got["/media/gradio_b.mp4"]
    assert (ld["title"], ld["uploader"], ld["published"], ld["duration_hint"], ld["license"]) == (
        "Gradio B (JSON-LD)", "Gradio Team", "2024-03-01T10:00:00Z", 5.0,
        "https://creativecommons.org/licenses/by/4.0/")
    assert got["/media/gradio_world.mp4"]["title"] == "Gradio World (link)"
    assert got["/hls/bbb/index.m3u8"]["download_via"] == "ytdlp"
    yt = got["https://www.youtube.com/embed/dQw4w9WgXcQ"]
    assert (yt["download_via"], yt["extractor"]) == ("ytdlp", "Youtube")
    # no DNS in the test sandbox: then it is recorded as a retryable crawl failure
    assert yt["status"] == "new" or yt["errors"] == {"crawl": "unresolvable"}
    watch = got["/clips/watch"]  # no extension, application/octet-stream: found by its bytes
    assert (watch["download_via"], watch["status"], watch["page_url"]) == (
        "files", "new", f"{web_site}/index.html")
    assert got["/media/bikes.mp4?variant=cc"]["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"

    # opted-out pages: their videos are recorded as rejected, not dropped
    for path in ("/media/gradio_a.mp4?optout=meta", "/media/gradio_b.mp4?optout=header"):
        assert got[path]["status"] == "rejected", path
        assert got[path]["errors"]["crawl"].startswith("opted_out"), path

    # every /fail/ route is found once (the downloader decides its fate), zero.mp4 is on two pages
    for name in ("slow", "truncated", "wrong-type", "html-as-video", "huge", "endless", "zero", "corrupt"):
        assert got[f"/fail/{name}.mp4"]["status"] == "new", name

    # hostile video URLs are recorded with the reason they were refused
    assert got["file:///etc/passwd.mp4"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert got["ftp://ftp.example.com/clip.mp4"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert got["data:video/mp4;base64,AAAAIGZ0eXBpc29t"]["errors"] == {"crawl": "scheme_not_allowed"}
    long_one = [i for p, i in got.items() if p.startswith("/media/aaaa")]
    assert [i["errors"] for i in long_one] == [{"crawl": "bad_url"}]
    assert "/media/gradio_world.mp4?via=dotdot" in got

    # depth 2 (the default): level2's video is found, level3 is never fetched
    assert "/media/carphone_pristine.mp4?depth=3" in got
    assert "/media/bikes.mp4?depth=4" not in got
    assert f"{web_site}/deep/level2.html" in crawled
    assert f"{web_site}/deep/level3.html" not in crawled
    # robots.txt forbids /private/; off-domain links are not followed; each page fetched once
    assert "/media/bikes.mp4?private=1" not in got
    assert not [u for u in crawled if "/private/" in u]
    assert not [u for u in crawled if not u.startswith(web_site)]
    assert len(crawled) == len(set(crawled))
    assert "'spiders/web/links_offsite'" in log


@pytest.mark.slow
def test_web_spider_refuses_loopback_without_allow_private(tmp_path, web_site, redis_url, key_prefix):
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/index.html",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=0)  # fmt: skip
    assert items == [] and crawled == []
    assert "'netguard/refused/private_address'" in log


def test_robots_headers_for_other_bots_are_ignored():
    from scrapy.http import HtmlResponse

    from crawler.spiders.web import header_directives

    headers = {"X-Robots-Tag": ["otherbot: noai", "noindex, nofollow"]}
    assert header_directives(HtmlResponse("https://e.org/", headers=headers)) == ["noindex", "nofollow"]
    headers = {"X-Robots-Tag": "videopipe: noai"}
    assert header_directives(HtmlResponse("https://e.org/", headers=headers)) == ["noai"]
