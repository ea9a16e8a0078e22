"""crawler.extract on saved pages: each case's input.html must give its expected.json exactly."""

import json

import pytest

from crawler.extract import extract_page, parse_duration, platform_extractor
from tests.conftest import DATA

PAGES = DATA / "pages" / "web"
CASES = sorted(p.name for p in PAGES.iterdir() if (p / "input.html").exists())


@pytest.mark.parametrize("case", CASES)
def test_saved_page_matches_expected(case):
    expected = json.loads((PAGES / case / "expected.json").read_text())
    page = extract_page((PAGES / case / "input.html").read_bytes(), expected["url"])
    assert page.to_dict() == expected


def test_every_pattern_has_a_case():
    patterns = set()
    for case in CASES:
        expected = json.loads((PAGES / case / "expected.json").read_text())
        patterns |= {v["pattern"] for v in expected["videos"]}
    assert {"video_tag", "source_tag", "og_video", "twitter", "jsonld", "link", "manifest",
            "embed"} <= patterns  # fmt: skip


def test_hls_and_platform_embeds_go_to_ytdlp_direct_files_to_files():
    hls = json.loads((PAGES / "hls" / "expected.json").read_text())["videos"]
    embed = json.loads((PAGES / "embed" / "expected.json").read_text())["videos"]
    assert [(v["download_via"], v["pattern"]) for v in hls] == [("ytdlp", "manifest")]
    assert [(v["download_via"], v["extractor"]) for v in embed] == [("ytdlp", "Youtube")]
    # the second iframe points at an unknown site: not a video
    assert all("example.invalid" not in v["url"] for v in embed)


def test_opt_out_and_licence_are_read():
    noai = extract_page((PAGES / "noai" / "input.html").read_text(), "https://example.org/noai.html")
    assert noai.opted_out
    lic = extract_page((PAGES / "license" / "input.html").read_text(), "https://example.org/l.html")
    assert not lic.opted_out
    assert lic.videos[0].license == "https://creativecommons.org/licenses/by-sa/4.0/"


@pytest.mark.parametrize("html", ["", "<html", "\x00\xff garbage \x00", "<video src=''>", "<a href='http://[::1'>x</a>"])
def test_broken_html_never_raises(html):
    page = extract_page(html, "https://example.org/")
    assert page.videos == []


def test_durations():
    assert parse_duration("PT1H2M3S") == 3723
    assert parse_duration("PT90S") == 90
    assert parse_duration("01:30") == 90
    assert parse_duration("12.5") == 12.5
    assert parse_duration("soon") is None
    assert parse_duration(-1) is None


def test_platform_extractor_excludes_generic():
    assert platform_extractor("https://www.youtube.com/watch?v=dQw4w9WgXcQ") == "Youtube"
    assert platform_extractor("https://example.org/page.html") is None
    assert platform_extractor("javascript:alert(1)") is None
