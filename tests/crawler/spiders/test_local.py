"""LocalSpider in a real `scrapy crawl local` process: videos found by content, every other file recorded, hostile names."""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.crawler.spiders.conftest import crawl


@pytest.mark.slow
def test_local_spider_finds_videos_by_content_with_hostile_names(tmp_path, media, redis_url, key_prefix):
    root = tmp_path / "My Videos"
    (root / "sub dir" / "deeper").mkdir(parents=True)
    clip = media["gradio_a"]
    names = ["with space.mp4", "ünïcødé 動画.mp4", "new\nline.mp4", "-leading-dash.mp4",
             "sub dir/deeper/nested.MOV", "sub dir/no_extension"]  # fmt: skip
    for name in names:
        shutil.copy(clip, root / name)
    (root / "notes.txt").write_text("not a video")
    (root / "empty.bin").write_bytes(b"")
    (root / "fake.mp4").write_text("<html>not really</html>")  # extension only: the probe decides
    (root / "sub dir" / "loop").symlink_to(root, target_is_directory=True)

    items, _, log = crawl(tmp_path, "local", "-a", f"path={root}", REDIS_URL=redis_url)
    # every file has an item: the videos to probe, and the others already decided (recorded)
    decided = {Path(i["path"]).name: (i["status"], i["errors"]) for i in items if i["status"] != "new"}
    assert decided == {"notes.txt": ("rejected", {"crawl": "not_a_video: no video container or extension"}),
                       "empty.bin": ("failed", {"crawl": "empty_file: 0 bytes"})}  # fmt: skip
    videos = [i for i in items if i["status"] == "new"]
    assert {i["path"] for i in videos} == {str(root / n) for n in names + ["fake.mp4"]}
    for item in items:
        assert (item["source"], item["download_via"]) == ("local", "local")
        assert item["title"] == Path(item["path"]).stem
        assert Path(unquote(urlsplit(item["url"]).path)) == Path(item["path"])
        assert item["url"].startswith("file:///")
    assert "'spiders/local/skipped/not_a_video': 1" in log
    assert "'spiders/local/skipped/empty_file': 1" in log
    assert "'spiders/local/skipped/folder_symlinks': 1" in log
    assert "'spiders/local/sniffed/by_extension': 1" in log

    # a second run on the same Redis yields only what is new
    shutil.copy(clip, root / "added later.webm")
    items, _, _ = crawl(tmp_path, "local", "-a", f"path={root}", REDIS_URL=redis_url)
    assert [i["path"] for i in items] == [str(root / "added later.webm")]
