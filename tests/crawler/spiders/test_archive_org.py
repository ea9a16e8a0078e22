"""ArchiveOrgSpider on saved Internet Archive API answers: parsed exactly, then crawled from the test site."""

import json

import pytest

from crawler.spiders.archive_org import items_from_metadata, parse_search, search_url, video_files
from tests.conftest import DATA
from tests.crawler.spiders.conftest import by_path, crawl

PAGES = DATA / "pages" / "archive_org"
FIELDS = ("url", "page_url", "title", "description", "uploader", "license", "published", "tags",
          "duration_hint", "thumbnail", "extra")  # fmt: skip
SEARCHES = sorted(p.name for p in PAGES.iterdir() if p.name.startswith("search_"))
ITEMS = sorted(p.name for p in PAGES.iterdir() if not p.name.startswith("search_"))


@pytest.mark.parametrize("case", SEARCHES)
def test_saved_search_page(case):
    ids, found = parse_search(json.loads((PAGES / case / "input.json").read_text()))
    assert {"identifiers": ids, "num_found": found} == json.loads((PAGES / case / "expected.json").read_text())


@pytest.mark.parametrize("case", ITEMS)
def test_saved_metadata_gives_expected_items(case):
    items = items_from_metadata(json.loads((PAGES / case / "input.json").read_text()), "https://archive.org")
    assert [{k: getattr(i, k) for k in FIELDS} for i in items] == json.loads((PAGES / case / "expected.json").read_text())
    assert all(i.source == "archive_org" and i.download_via == "files" for i in items)


def test_one_file_per_original_unless_every_file_is_asked_for():
    files = json.loads((PAGES / "bbb_prelinger_test" / "input.json").read_text())["files"]
    assert [f["name"] for f in video_files(files)] == ["bigbuckbunny.mp4"]  # h.264 beats MPEG2, Ogg, 512Kb
    assert [f["name"] for f in video_files(files, every=True)] == [
        "bigbuckbunny.mpeg", "bigbuckbunny.mp4", "bigbuckbunny.ogv", "bigbuckbunny_512kb.mp4"]
    assert items_from_metadata({}, "https://archive.org") == []  # the API's answer for an unknown id
    assert items_from_metadata({"is_dark": True, "metadata": {"identifier": "x"}}, "https://archive.org") == []


def test_search_url_is_the_advanced_search_api():
    assert search_url("https://archive.org", "collection:prelinger AND mediatype:movies", 50, 2) == (
        "https://archive.org/advancedsearch.php?q=collection%3Aprelinger+AND+mediatype%3Amovies"
        "&fl%5B%5D=identifier&sort%5B%5D=identifier+asc&rows=50&page=2&output=json")


@pytest.mark.slow
def test_archive_org_crawl_pages_through_search_and_metadata(tmp_path, web_site, redis_url, key_prefix):
    base = f"{web_site}/archive_org"
    items, crawled, log = crawl(tmp_path, "archive_org", "-a", "query=collection:prelinger AND mediatype:movies",
                                settings=[f"ARCHIVE_ORG_URL={base}", "ARCHIVE_ORG_ROWS=2"],
                                REDIS_URL=redis_url)  # fmt: skip
    got = by_path(items, base)
    assert set(got) == {"/download/bbb_prelinger_test/bigbuckbunny.mp4",
                        "/download/carphone_sequences_test/carphone_pristine.mp4",
                        "/download/carphone_sequences_test/bikes.mp4",
                        "/download/gradio_reels_test/reels/gradio_world.mp4"}  # fmt: skip
    bbb = got["/download/bbb_prelinger_test/bigbuckbunny.mp4"]
    assert (bbb["license"], bbb["uploader"], bbb["published"], bbb["extra"]["collection"], bbb["page_url"]) == (
        "http://creativecommons.org/licenses/by/3.0/", "Blender Foundation", "2008",
        ["prelinger", "feature_films"], f"{base}/details/bbb_prelinger_test")
    searches = [u for u in crawled if "advancedsearch.php" in u]
    assert [u.split("&page=")[1].split("&")[0] for u in searches] == ["1", "2", "3"]  # 5 found, 2 a page
    assert len([u for u in crawled if "/metadata/" in u]) == 5
    assert "'spiders/archive_org/identifiers_unknown': 1" in log  # zz_missing_item answers {}
    assert "'spiders/archive_org/items_without_video': 1" in log  # the audio-only item

    (tmp_path / "again").mkdir()
    again, crawled, _ = crawl(tmp_path / "again", "archive_org", "-a", "query=collection:prelinger AND mediatype:movies",
                              settings=[f"ARCHIVE_ORG_URL={base}", "ARCHIVE_ORG_ROWS=2"], REDIS_URL=redis_url)  # fmt: skip
    assert again == [] and not [u for u in crawled if "/metadata/" in u]  # a second run: nothing new


@pytest.mark.slow
def test_archive_org_files_download_through_the_archives_redirect(tmp_path, web_site, redis_url, key_prefix, data_dir):
    """Full item pipelines: /download/<id>/<file> answers 302 and the clip is fetched and probed."""
    base = f"{web_site}/archive_org"
    items, _, _ = crawl(tmp_path, "archive_org", "-a", "identifier=carphone_sequences_test",
                        settings=[f"ARCHIVE_ORG_URL={base}", "ITEM_PIPELINES=" + json.dumps({
                            "pipelines.download.DownloadPipeline": 100, "pipelines.dedup.DedupPipeline": 200,
                            "pipelines.probe.ProbePipeline": 300})],
                        REDIS_URL=redis_url)  # fmt: skip
    got = by_path(items, base)
    assert set(got) == {"/download/carphone_sequences_test/carphone_pristine.mp4",
                        "/download/carphone_sequences_test/bikes.mp4"}  # fmt: skip
    for item in got.values():
        assert item["status"] == "new" and item["errors"] == {}, item
        assert item["duration"] > 1 and item["sha256"]
