"""The opt-out list (OPTOUT_PATH) honoured by every spider: listed videos rejected and recorded, listed pages never fetched."""

import json
from urllib.parse import urlsplit

import pytest
import redis

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from tests.crawler.spiders.conftest import by_path, crawl

OPTED = {"crawl": "opted_out: optout_list"}


def optout_file(tmp_path, *lines):
    path = tmp_path / "optout.txt"
    path.write_text("# takedowns\n" + "".join(f"{line}\n" for line in lines))
    return path


@pytest.mark.slow
def test_web_spider_rejects_listed_videos_and_never_fetches_listed_pages(tmp_path, web_site, redis_url, key_prefix):
    host = urlsplit(web_site).netloc
    path = optout_file(tmp_path, f"{host}/media/bikes.mp4", f"http://{host}/deep/  # a folder",
                       "youtube.com  # a whole platform", f"{host}/watch/big-buck-bunny.html")  # fmt: skip
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/index.html", "-a", "sitemap=1",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1, OPTOUT_PATH=path)  # fmt: skip
    got = by_path(items, web_site)
    assert got["/media/bikes.mp4"]["errors"] == OPTED and got["/media/bikes.mp4"]["status"] == "rejected"
    assert got["/media/bikes.mp4?variant=cc"]["errors"] == OPTED  # an entry without a query covers every query
    assert got["https://www.youtube.com/embed/dQw4w9WgXcQ"]["errors"] == OPTED  # by domain, before any DNS
    assert got["/media/bigbuckbunny.mp4?via=sitemap"]["errors"] == OPTED  # its page is listed
    assert got["/media/gradio_a.mp4"]["status"] == "new"
    assert not [u for u in crawled if "/deep/" in u]
    assert "'optout/refused'" in log  # the links to /deep/ were refused before any request


@pytest.mark.slow
def test_urls_archive_and_commons_spiders_honour_the_list_and_the_ledger_records_it(
        tmp_path, web_site, redis_url, key_prefix):  # fmt: skip
    host = urlsplit(web_site).netloc
    path = optout_file(tmp_path, f"{host}/media/gradio_a.mp4", f"{host}/archive_org/download/carphone_sequences_test/",
                       f"{host}/upload.wikimedia.org/wikipedia/commons/e/e5/Gradio_b_demo_(test_clip).ogv")  # fmt: skip
    env = dict(REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1, OPTOUT_PATH=path)
    handoff = ["ITEM_PIPELINES=" + json.dumps({"pipelines.handoff.HandoffPipeline": 600})]

    urls = tmp_path / "list.csv"
    urls.write_text(f"url,caption\n{web_site}/media/gradio_a.mp4,listed\n{web_site}/media/bikes.mp4,kept\n")
    (tmp_path / "u").mkdir()
    items, _, _ = crawl(tmp_path / "u", "urls", "-a", f"path={urls}", settings=handoff, **env)
    assert {i["url"].replace(web_site, ""): i["errors"] for i in items} == {"/media/gradio_a.mp4": OPTED,
                                                                            "/media/bikes.mp4": {}}  # fmt: skip

    (tmp_path / "a").mkdir()
    items, _, _ = crawl(tmp_path / "a", "archive_org", "-a", "query=collection:prelinger",
                        settings=[f"ARCHIVE_ORG_URL={web_site}/archive_org", "ARCHIVE_ORG_ROWS=2", *handoff], **env)
    rejected = sorted(i["url"].rsplit("/", 1)[1] for i in items if i["errors"] == OPTED)
    assert rejected == ["bikes.mp4", "carphone_pristine.mp4"] and len(items) == 4

    (tmp_path / "c").mkdir()
    items, _, _ = crawl(tmp_path / "c", "commons", "-a", "category=Test clips",
                        settings=[f"COMMONS_API_URL={web_site}/commons/w/api.php", *handoff], **env)
    assert [i["title"] for i in items if i["errors"] == OPTED] == ["Gradio b demo (test clip)"] and len(items) == 3

    ledger = Ledger(redis.Redis.from_url(redis_url), RedisKeys(key_prefix))
    entry = ledger.get(f"{web_site}/media/gradio_a.mp4")
    assert (entry["status"], entry["stage"], entry["error"], entry["source"]) == (
        "rejected", "crawl", "opted_out: optout_list", "urls")
    assert ledger.counts()["rejected"] == 4


@pytest.mark.slow
def test_ytdlp_skips_a_listed_start_url_without_resolving_it(tmp_path, redis_url, key_prefix):
    path = optout_file(tmp_path, "youtube.com")
    items, crawled, log = crawl(tmp_path, "ytdlp", "-a", "url=https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                                REDIS_URL=redis_url, OPTOUT_PATH=path)  # fmt: skip
    assert items == [] and crawled == []
    assert "'spiders/ytdlp/opted_out_starts': 1" in log
