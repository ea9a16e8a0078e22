"""DownloadPipeline in-process: yt-dlp refusals and failures, and the names files are stored under."""

from crawler.items import VideoItem
from crawler.media_types import VIDEO_EXTENSIONS
from pipelines.download import DownloadPipeline, safe_extension
from tests.pipelines.conftest import project_crawler, run_item


def test_ytdlp_refuses_private_hosts_unless_allowed(redis_url, key_prefix, data_dir):
    crawler = project_crawler(ALLOW_PRIVATE_NETWORKS=False, KEY_PREFIX=key_prefix)
    pipeline = DownloadPipeline.from_crawler(crawler)
    item = run_item(pipeline, VideoItem(url="http://127.0.0.1:9/v.m3u8", source="t",
                                        download_via="ytdlp"))  # fmt: skip
    assert item.status == "rejected"
    assert item.errors["download"].startswith("private_address")
    assert crawler.stats.get_value("pipelines/download/private_address") == 1


def test_ytdlp_failure_is_recorded_and_releases_the_claim(redis_url, key_prefix, data_dir, site):
    crawler = project_crawler(ALLOW_PRIVATE_NETWORKS=True, KEY_PREFIX=key_prefix, YTDLP_TIMEOUT=60)
    pipeline = DownloadPipeline.from_crawler(crawler)
    url = site + "/fail/404"
    item = run_item(pipeline, VideoItem(url=url, source="t", download_via="ytdlp"))
    assert item.status == "failed" and item.errors["download"].startswith("ytdlp_error")
    again = run_item(pipeline, VideoItem(url=url, source="t", download_via="ytdlp"))
    assert again.status == "failed"  # retried, not a "duplicate" of a failure


def test_stored_files_keep_only_known_video_extensions():
    assert {safe_extension(f"clip{ext.upper()}") for ext in VIDEO_EXTENSIONS} == VIDEO_EXTENSIONS
    assert safe_extension("../../etc/passwd") == safe_extension("watch.php") == ".bin"
