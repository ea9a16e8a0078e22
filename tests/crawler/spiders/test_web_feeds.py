"""WebSpider on sitemaps, video sitemaps, robots.txt Sitemap: lines and RSS / Atom feeds of the test site."""

import json

import pytest
import redis

from tests.crawler.spiders.conftest import by_path, crawl


@pytest.mark.slow
def test_sitemap_index_leads_to_video_sitemap_entries_and_pages(tmp_path, web_site, redis_url, key_prefix):
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/sitemap-index.xml",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    bbb = got["/media/bigbuckbunny.mp4?via=sitemap"]
    assert (bbb["title"], bbb["description"], bbb["duration_hint"], bbb["published"], bbb["uploader"],
            bbb["tags"], bbb["page_url"], bbb["thumbnail"], bbb["download_via"]) == (
        "Big Buck Bunny (video sitemap)", "A large & lovable rabbit, in HD.", 10.0, "2024-03-01T08:00:00+00:00",
        "Blender Foundation", ["animation", "rabbit"], f"{web_site}/watch/big-buck-bunny.html",
        f"{web_site}/media/bbb-poster.jpg", "files")  # fmt: skip
    player = got["https://www.youtube.com/embed/dQw4w9WgXcQ"]
    assert (player["download_via"], player["extractor"], player["page_url"]) == (
        "ytdlp", "Youtube", f"{web_site}/watch/rick.html")
    # the sitemaps' pages are crawled (the gzipped one too); robots.txt and scope still hold
    for path in ("/video-sitemap.xml", "/pages-sitemap.xml.gz", "/og-video.html", "/video-tag.html", "/twitter.html"):
        assert f"{web_site}{path}" in crawled, path
    assert {"/media/carphone_pristine.mp4", "/media/bigbuckbunny.mp4", "/media/gradio_a.mp4"} <= set(got)
    assert not [u for u in crawled if "/private/" in u or not u.startswith(web_site)]
    assert "'spiders/web/feeds/sitemapindex': 1" in log and "'spiders/web/feeds/urlset': 2" in log


@pytest.mark.slow
def test_sitemap_1_reads_robots_txt_sitemaps_and_sitemap_hops_are_not_depth(tmp_path, web_site, redis_url,
                                                                             key_prefix):  # fmt: skip
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/twitter.html", "-a", "sitemap=1",
                                "-a", "depth=0", REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert set(got) == {"/media/gradio_a.mp4", "/media/bigbuckbunny.mp4?via=sitemap",
                        "https://www.youtube.com/embed/dQw4w9WgXcQ"}  # fmt: skip
    for path in ("/robots.txt", "/sitemap-index.xml", "/video-sitemap.xml", "/pages-sitemap.xml.gz"):
        assert f"{web_site}{path}" in crawled, path
    assert f"{web_site}/og-video.html" not in crawled  # depth 0: sitemap entries are links not followed
    assert "'spiders/web/robots_sitemaps': 1" in log


@pytest.mark.slow
def test_rss_and_atom_feeds_yield_their_videos_with_feed_metadata(tmp_path, web_site, redis_url, key_prefix):
    redis.Redis.from_url(redis_url).rpush("web:start_urls", json.dumps(
        {"url": f"{web_site}/atom-feed.xml", "meta": {"depth": 0}}))
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/rss-media.xml", "-a", "depth=0",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert set(got) == {"/media/gradio_a.mp4?rendition=720", "/media/bikes.mp4?via=rss", "/clips/watch",
                        "/media/carphone_pristine.mp4?via=atom", "https://www.youtube.com/v/dQw4w9WgXcQ?version=3"}
    gradio = got["/media/gradio_a.mp4?rendition=720"]
    assert (gradio["title"], gradio["uploader"], gradio["published"], gradio["license"], gradio["tags"],
            gradio["page_url"], gradio["duration_hint"]) == (
        "Gradio A", "Gradio Team", "2024-03-01T10:00:00+00:00", "https://creativecommons.org/licenses/by/4.0/",
        ["demo", "gradio", "ui"], f"{web_site}/twitter.html", 5.0)  # fmt: skip
    assert got["/media/bikes.mp4?via=rss"]["uploader"] == "Jo Editor"
    carphone = got["/media/carphone_pristine.mp4?via=atom"]
    assert (carphone["description"], carphone["license"]) == (
        "The carphone test sequence.", "https://creativecommons.org/publicdomain/zero/1.0/")
    assert got["https://www.youtube.com/v/dQw4w9WgXcQ?version=3"]["download_via"] == "ytdlp"
    assert not [u for u in crawled if u.endswith(".html")]  # depth 0: item links not followed
    assert "'spiders/web/feeds/rss': 1" in log and "'spiders/web/feeds/atom': 1" in log
