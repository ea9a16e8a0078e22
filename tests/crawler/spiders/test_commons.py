"""CommonsSpider on saved Wikimedia Commons API answers: parsed exactly, then crawled from the test site."""

import json

import pytest

from crawler.spiders.commons import api_url, category_title, item_from_page, pages_of
from tests.conftest import DATA
from tests.crawler.spiders.conftest import by_path, crawl

PAGES = DATA / "pages" / "commons"
FIELDS = ("url", "page_url", "title", "description", "uploader", "license", "published", "tags",
          "duration_hint", "thumbnail", "extra")  # fmt: skip
CASES = sorted(p.name for p in PAGES.iterdir() if (p / "input.json").exists())


@pytest.mark.parametrize("case", CASES)
def test_saved_api_page_gives_expected_items(case):
    pages = pages_of(json.loads((PAGES / case / "input.json").read_text()))
    items = [i for i in map(item_from_page, pages) if i]
    assert [{k: getattr(i, k) for k in FIELDS} for i in items] == json.loads((PAGES / case / "expected.json").read_text())
    assert len(items) < len(pages)  # each page has a file that is no video (a photo, an audio file)


def test_only_videos_by_mediatype_or_mime():
    page = {"title": "File:X.ogg", "imageinfo": [{"url": "https://u/X.ogg", "mime": "application/ogg"}]}
    assert item_from_page(page) is None  # no mediatype, no video/ mime
    page["imageinfo"][0]["mediatype"] = "VIDEO"
    assert item_from_page(page).title == "X"
    page["imageinfo"][0].update(mediatype="AUDIO", mime="video/ogg")
    assert item_from_page(page) is None  # the mediatype wins
    assert pages_of({"query": {"pages": {"5": {"pageid": 5}}}}) == [{"pageid": 5}]  # formatversion=1


def test_category_names_and_api_url():
    assert category_title("Videos_of_birds") == category_title("Category:Videos of birds") == "Category:Videos of birds"
    with pytest.raises(ValueError):
        category_title("Category:")
    url = api_url("https://commons.wikimedia.org/w/api.php", "Category:Test clips", 50, {"gcmcontinue": "file|x|1"})
    assert url.startswith("https://commons.wikimedia.org/w/api.php?action=query&format=json&formatversion=2"
                          "&generator=categorymembers&gcmtitle=Category%3ATest+clips&gcmtype=file&gcmlimit=50")
    assert "iiprop=url%7Cmime%7Csize%7Cmediatype%7Cextmetadata" in url and url.endswith("&gcmcontinue=file%7Cx%7C1")


@pytest.mark.slow
def test_commons_crawl_follows_continue_and_keeps_licence_author_description(tmp_path, web_site, redis_url,
                                                                             key_prefix):  # fmt: skip
    api = f"{web_site}/commons/w/api.php"
    items, crawled, log = crawl(tmp_path, "commons", "-a", "category=Test clips",
                                settings=[f"COMMONS_API_URL={api}"], REDIS_URL=redis_url)  # fmt: skip
    got = by_path(items, f"{web_site}/upload.wikimedia.org/wikipedia/commons")
    assert set(got) == {"/a/a7/Bigbuckbunny_trailer_(test_clip).webm", "/e/e5/Gradio_b_demo_(test_clip).ogv",
                        "/f/f1/Carphone_pristine_(test_clip).webm"}  # fmt: skip
    bbb = got["/a/a7/Bigbuckbunny_trailer_(test_clip).webm"]
    assert (bbb["source"], bbb["license"], bbb["extra"]["license_name"], bbb["uploader"], bbb["description"]) == (
        "commons", "https://creativecommons.org/licenses/by/3.0", "CC BY 3.0", "Blender Foundation",
        "A large and lovable rabbit deals with three tiny bullies.")
    assert got["/f/f1/Carphone_pristine_(test_clip).webm"]["license"] == "Public domain"  # no URL: the name
    assert len([u for u in crawled if "/commons/w/api.php" in u]) == 2
    assert any("gcmcontinue=file%7C47524144494f20422e4f4756%7C131313" in u for u in crawled)
    assert "'spiders/commons/files_not_video': 2" in log
