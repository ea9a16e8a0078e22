"""crawler.feeds on saved sitemaps and feeds: each case's input.xml must give its expected.json exactly."""

import gzip
import json

import pytest

from crawler.feeds import looks_like_feed, parse_feed, sitemaps_in_robots
from tests.conftest import DATA

PAGES = DATA / "pages" / "web"
CASES = sorted(p.name for p in PAGES.iterdir() if (p / "input.xml").exists())


@pytest.mark.parametrize("case", CASES)
def test_saved_feed_matches_expected(case):
    expected = json.loads((PAGES / case / "expected.json").read_text())
    feed = parse_feed((PAGES / case / "input.xml").read_bytes(), expected["url"])
    assert feed.to_dict() == expected


def test_every_kind_and_pattern_has_a_case():
    kinds, patterns = set(), set()
    for case in CASES:
        expected = json.loads((PAGES / case / "expected.json").read_text())
        kinds.add(expected["kind"])
        patterns |= {v["pattern"] for v in expected["videos"]}
    assert kinds == {"sitemapindex", "urlset", "rss", "atom"}
    assert patterns == {"sitemap_video", "sitemap_player", "media_content", "enclosure"}


def test_media_rss_takes_one_rendition_per_group_and_no_audio_or_images():
    feed = parse_feed((PAGES / "rss_media" / "input.xml").read_bytes(), "https://example.org/rss-media.xml")
    urls = [v.url for v in feed.videos]
    assert urls.count("https://example.org/media/gradio_a.mp4?rendition=720") == 1
    assert not [u for u in urls if "rendition=360" in u or u.endswith((".mp3", ".jpg"))]


def test_gzipped_sitemaps_are_read_and_bombs_are_not():
    raw = (PAGES / "pages_sitemap" / "input.xml").read_bytes()
    feed = parse_feed(gzip.compress(raw), "https://example.org/pages-sitemap.xml.gz")
    assert feed.kind == "urlset" and len(feed.pages) == 4
    bomb = gzip.compress(b"<urlset>" + b" " * 2_000_000 + b"</urlset>")
    assert parse_feed(bomb, "https://example.org/s.xml.gz", max_bytes=1_000_000) is None


def test_entities_are_not_expanded():
    billion_laughs = b"""<?xml version="1.0"?>
    <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
    <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
    <rss><channel><title>&lol3;</title><item><title>&lol3;</title>
    <enclosure url="https://example.org/a.mp4" type="video/mp4"/></item></channel></rss>"""
    feed = parse_feed(billion_laughs, "https://example.org/feed.xml")
    assert [v.url for v in feed.videos] == ["https://example.org/a.mp4"]
    assert "lollol" not in (feed.videos[0].title or "")


@pytest.mark.parametrize("body", [b"", b"<html><body>no feed</body></html>", b"\x00\xff garbage",
                                  b"<?xml version='1.0'?><html xmlns='http://www.w3.org/1999/xhtml'/>",
                                  b"<rss><channel><item><enclosure url='http://[::1' type='video/mp4'/>"])  # fmt: skip
def test_what_is_no_feed_gives_none_or_nothing_and_never_raises(body):
    feed = parse_feed(body, "https://example.org/x.xml")
    assert feed is None or feed.videos == []


def test_robots_sitemap_lines_and_feed_sniffing():
    robots = "User-agent: *\nDisallow: /private/\nSitemap: https://example.org/a.xml\nsitemap:/b.xml # rel\n"
    assert sitemaps_in_robots(robots, "https://example.org/robots.txt") == [
        "https://example.org/a.xml", "https://example.org/b.xml"]
    assert looks_like_feed(b"\xef\xbb\xbf\n <?xml version='1.0'?><rss>")
    assert looks_like_feed(b"<urlset xmlns=...>") and looks_like_feed(gzip.compress(b"x")[:10])
    assert not looks_like_feed(b"<!doctype html><html>")
