"""Redirects of direct downloads: followed hop by hop, each hop through netguard and the opt-out list.

``pipelines.fetch.fetch`` and the download pipeline against real local servers: the test site
(allowed by the policy, ``127.0.0.1:<its port>``) and an "internal" site on another port that
the policy refuses; a refused hop never reaches the internal site.
"""

from __future__ import annotations

import hashlib

import pytest

from crawler.errors import MediaError
from crawler.items import VideoItem
from crawler.netguard import Guard
from pipelines.download import DownloadPipeline
from pipelines.fetch import Limits, fetch
from tests.pipelines.conftest import crawl, project_crawler, run_item
from tests.site import DATA, Site


@pytest.fixture
def internal():
    site = Site()
    site.start()
    yield site
    site.stop()


def only(site_url: str) -> Guard:
    return Guard(f"127.0.0.1:{site_url.rsplit(':', 1)[1]}")


def test_redirects_are_followed_and_the_bytes_hashed_on_the_way(site, tmp_path):
    got = fetch(f"{site}/hostile/redirect?n=3&to=/media/bikes.mp4", tmp_path / "x", guard=only(site),
                limits=Limits(max_bytes=10**8, timeout=10, max_redirects=3))  # fmt: skip
    assert len(got.redirects) == 3 and got.url == f"{site}/media/bikes.mp4"
    data = (DATA / "bikes.mp4").read_bytes()
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "x").read_bytes() == data


@pytest.mark.parametrize(("path", "max_redirects", "code"), [
    ("/hostile/redirect?n=3&to=/media/bikes.mp4", 2, "too_many_redirects"),
    ("/hostile/redirect-loop", 10, "too_many_redirects"),
    ("/hostile/redirect?to=/media/bikes.mp4", 0, "http_302"),  # MEDIA_ALLOW_REDIRECTS off
    ("/hostile/redirect?to=file%3A%2F%2F%2Fetc%2Fpasswd", 10, "scheme_not_allowed"),
    ("/hostile/redirect?to=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F", 10, "private_address"),
    ("/hostile/redirect?to=http%3A%2F%2F%5B%3A%3Affff%3A127.0.0.1%5D%3A1%2F", 10, "private_address"),
])  # fmt: skip
def test_a_bad_hop_ends_with_its_code(site, tmp_path, path, max_redirects, code):
    with pytest.raises(MediaError) as err:
        fetch(site + path, tmp_path / "x", guard=only(site),
              limits=Limits(max_bytes=10**8, timeout=10, max_redirects=max_redirects))  # fmt: skip
    assert err.value.code == code, err.value


def test_a_hop_to_a_refused_host_never_reaches_it(site, internal, tmp_path):
    target = f"{internal.url}/media/bikes.mp4"
    with pytest.raises(MediaError) as err:
        fetch(f"{site}/hostile/redirect?n=2&to={target}", tmp_path / "x", guard=only(site),
              limits=Limits(max_bytes=10**8, timeout=10))  # fmt: skip
    assert err.value.code == "private_address" and "redirect 2 to" in err.value.message
    assert internal.hits == []
    # the same hop under a policy that allows both: followed
    both = Guard(f"127.0.0.1:{site.rsplit(':', 1)[1]},127.0.0.1:{internal.url.rsplit(':', 1)[1]}")
    assert fetch(f"{site}/hostile/redirect?to={target}", tmp_path / "y", guard=both,
                 limits=Limits(max_bytes=10**8, timeout=10)).size > 0  # fmt: skip
    assert internal.hits == ["/media/bikes.mp4"]


def test_the_pipeline_checks_every_hop_against_the_opt_out_list(site, tmp_path, redis_url, key_prefix, data_dir):
    optout = tmp_path / "optout.txt"
    optout.write_text(f"{site.split('://', 1)[1]}/media/carphone_pristine.mp4\n")
    crawler = project_crawler(KEY_PREFIX=key_prefix, FILES_STORE=str(data_dir / "videos"), ROBOTSTXT_OBEY=False,
                              OPTOUT_PATH=str(optout), ALLOW_PRIVATE_NETWORKS=f"127.0.0.1:{site.rsplit(':', 1)[1]}",
                              RETRY_ENABLED=False)  # fmt: skip
    pipeline = DownloadPipeline.from_crawler(crawler)
    try:
        listed = run_item(pipeline, VideoItem(url=f"{site}/hostile/redirect?to=/media/carphone_pristine.mp4",
                                              source="t", download_via="files"))  # fmt: skip
        fine = run_item(pipeline, VideoItem(url=f"{site}/hostile/redirect?to=/media/gradio_b.mp4", source="t",
                                            download_via="files"))  # fmt: skip
    finally:
        pipeline.close_spider()
    assert (listed.status, listed.errors["download"]) == ("rejected", "opted_out: optout_list")
    assert fine.status == "new" and fine.sha256 == hashlib.sha256((DATA / "gradio_b.mp4").read_bytes()).hexdigest()
    assert fine.path.endswith(f"full/{fine.sha256}.mp4") and fine.size_bytes == (DATA / "gradio_b.mp4").stat().st_size
    assert crawler.stats.get_value("pipelines/download/redirects") == 1


@pytest.mark.slow
def test_robots_txt_is_obeyed_for_every_hop_of_a_real_crawl(crawl_env, tmp_path):
    """robots.txt (``Disallow: /private/``) through Scrapy's own middleware, per hop."""
    site = crawl_env["site"]
    items = [{"url": site + path, "source": "t", "download_via": "files"}
             for path in ("/private/clip.mp4", "/hostile/redirect?to=/private/clip.mp4", "/media/bikes.mp4")]  # fmt: skip
    feed, log = crawl(tmp_path, items, ROBOTSTXT_OBEY="1")
    assert feed[site + "/private/clip.mp4"]["errors"] == {"download": f"robots_txt_disallowed: {site}/private/clip.mp4"}
    hop = feed[site + "/hostile/redirect?to=/private/clip.mp4"]
    assert (hop["status"], hop["errors"]["download"].split(":")[0]) == ("rejected", "robots_txt_disallowed")
    assert feed[site + "/media/bikes.mp4"]["status"] == "queued"
    assert "'robotstxt/forbidden': 2" in log
