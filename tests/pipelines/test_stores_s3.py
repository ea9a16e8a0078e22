"""Bucket stores (``FILES_STORE=s3://`` / ``gs://``) and reading videos by URI, against STAND-INS on loopback.

S3 is moto's S3 server, GCS is gcp-storage-emulator (tests/objectstore.py): neither is the real
service. Every test runs on both (``buckets``) unless it names one. What is checked: a store
uploads under its prefix and keeps the staged file as the local copy until released; a store
that cannot serve fails when it is opened, with one sentence, and a crawl with it exits non-zero
before any item; probe, phash, sha256, the frames and scenes stages read an object in place
(ranged reads) and give what they give for the local file.
"""

import subprocess

import numpy as np
import pytest

from crawler import locations
from crawler.errors import MediaError
from crawler.items import VideoItem
from pipelines.media import phash, probe, sha256_file
from pipelines.stores import GCSFilesStore, S3FilesStore, StorageError, open_store
from processing.stages.frames import FramesStage
from processing.stages.scenes import ScenesStage
from processing.work import Work
from tests.conftest import PYTHON, ROOT, project_env
from tests.objectstore import free_port


def test_a_bucket_store_uploads_under_its_prefix_and_holds_the_staged_file(buckets, media):
    buckets.make("store")
    store = open_store(f"{buckets.scheme}://store/videos/")
    assert isinstance(store, S3FilesStore if buckets.scheme == "s3" else GCSFilesStore)
    data = media["gradio_a"].read_bytes()
    staged = store.staging_dir() / "dl-1.part"
    staged.write_bytes(data)
    uri = store.persist(staged, "full/abc.mp4")
    assert uri == f"{buckets.scheme}://store/videos/full/abc.mp4" and not staged.exists()
    assert buckets.keys("store") == ["videos/full/abc.mp4"] and buckets.read("store", "videos/full/abc.mp4") == data
    held = store.local_path(uri)  # the staged bytes stay on local disk for probe and phash
    assert held.read_bytes() == data and held.parent == store.staging_dir()
    assert locations.readable(uri) == held and sha256_file(uri) == sha256_file(media["gradio_a"])

    # the same name (a content address) with the same size is not uploaded again
    buckets.put(b"x" * len(data), "store", "videos/full/abc.mp4")
    staged.write_bytes(data)
    assert store.persist(staged, "full/abc.mp4") == uri
    assert buckets.read("store", "videos/full/abc.mp4") == b"x" * len(data)
    locations.release(uri)
    assert held.exists()  # held twice (two downloads of the same bytes): one copy, two releases
    locations.release(uri)
    assert not held.exists() and store.local_path(uri) is None
    staging = store.staging_dir()
    store.close()
    assert not staging.exists()


def test_a_store_that_cannot_serve_fails_when_opened_with_one_sentence(buckets, monkeypatch):
    name = "S3" if buckets.scheme == "s3" else "GCS"
    with pytest.raises(StorageError, match=rf"^FILES_STORE='{buckets.scheme}://nowhere/v': the {name} bucket "
                                           r"'nowhere' cannot be used \(no such bucket\)$"):  # fmt: skip
        open_store(f"{buckets.scheme}://nowhere/v")
    with pytest.raises(StorageError, match="names no bucket"):
        open_store(f"{buckets.scheme}:///v")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL" if buckets.scheme == "s3" else "STORAGE_EMULATOR_HOST", closed)
    with pytest.raises(StorageError, match=rf"the {name} bucket 'store' cannot be used \(no answer from {closed}"):
        open_store(f"{buckets.scheme}://store/v")


def test_media_functions_read_an_object_in_place(buckets, media, monkeypatch):
    buckets.make("inbox")
    local = media["bigbuckbunny"]
    uri = buckets.put(local, "inbox", "clips/bbb.mp4")
    read = {"bytes": 0}
    real_open = locations.open_input

    def counting_open(location, *args, **kwargs):  # the real reader, its bytes counted
        fh = real_open(location, *args, **kwargs)
        real_read = fh.read

        def read_counted(n=-1):
            data = real_read(n)
            read["bytes"] += len(data)
            return data

        fh.read = read_counted
        return fh

    expected = probe(local), phash(local), sha256_file(local)
    monkeypatch.setattr(locations, "open_input", counting_open)
    assert probe(uri) == expected[0]
    size = local.stat().st_size
    assert 0 < read["bytes"] < size / 4, f"probe read {read['bytes']} of {size} bytes"  # ranged reads
    assert phash(uri) == expected[1]
    read["bytes"] = 0
    assert sha256_file(uri) == expected[2] and read["bytes"] == size  # the whole object, streamed

    half = local.read_bytes()[: size // 2]
    cases = {"html.mp4": (b"<html>not a video</html>" * 40, "not_a_video"), "cut.mp4": (half, "truncated"),
             "empty.mp4": (b"", "empty_file")}  # fmt: skip
    for key, (data, code) in cases.items():
        with pytest.raises(MediaError) as err:
            probe(buckets.put(data, "inbox", key))
        assert err.value.code == code, key
    with pytest.raises(MediaError) as err:
        probe(f"{buckets.scheme}://inbox/no/such.mp4")
    assert err.value.code == "missing_file"


def test_frames_and_scenes_decode_an_object_as_they_decode_the_file(buckets, media, tmp_path):
    buckets.make("inbox")
    buckets.make("thumbs")
    local = media["bikes"]
    uri = buckets.put(local, "inbox", "bikes.mp4")
    stage = FramesStage(frames_per_video=8, thumbnail_dir=f"{buckets.scheme}://thumbs/t/")
    stage.setup()
    paths = [str(local), uri, f"{buckets.scheme}://inbox/gone.mp4"]
    on_disk, in_bucket, missing = (Work(VideoItem(url=p, source="local", path=p, video_id=f"v{i}"))
                                   for i, p in enumerate(paths))  # fmt: skip
    stage.process_batch([on_disk, in_bucket, missing])
    assert in_bucket.item.status != "failed" and in_bucket.frame_times == on_disk.frame_times
    assert np.array_equal(in_bucket.frames, on_disk.frames) and np.array_equal(in_bucket.audio, on_disk.audio)
    assert in_bucket.item.thumbnail_path == f"{buckets.scheme}://thumbs/t/v1.jpg"
    assert buckets.read("thumbs", "t/v1.jpg")[:3] == b"\xff\xd8\xff"  # a JPEG, in the bucket
    assert missing.item.status == "failed" and missing.item.errors["frames"].startswith("missing_file")
    scenes = ScenesStage()
    scenes.setup()
    assert scenes.detect(uri) == scenes.detect(str(local))


def _crawl(env, tmp_path, folder):
    return subprocess.run([PYTHON, "-m", "scrapy", "crawl", "local", "-a", f"path={folder}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def test_a_crawl_whose_store_does_not_answer_exits_non_zero_at_start(redis_url, data_dir, key_prefix, media,
                                                                    tmp_path, redis_client):  # fmt: skip
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(media["gradio_a"].read_bytes())
    closed = f"http://127.0.0.1:{free_port()}"
    env = project_env(DATA_DIR=data_dir, FILES_STORE="s3://store/videos", AWS_ENDPOINT_URL=closed,
                      AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    done = _crawl(env, tmp_path, folder)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert (f"FILES_STORE='s3://store/videos': the S3 bucket 'store' cannot be used (no answer from {closed}"
            in out), out[-3000:]  # fmt: skip
    assert "Spider opened" not in out and not redis_client.exists(f"{key_prefix}:videos")  # no item went anywhere


def test_a_crawl_without_the_store_packages_exits_non_zero_at_start(redis_url, data_dir, key_prefix, media,
                                                                   tmp_path, redis_client):  # fmt: skip
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:  # the test's stand-in for a machine without the S3 packages\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore', 's3fs', 'aiobotocore'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )  # fmt: skip
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(media["gradio_a"].read_bytes())
    env = project_env(DATA_DIR=data_dir, FILES_STORE="s3://store/videos", AWS_EC2_METADATA_DISABLED="true")
    env["PYTHONPATH"] = f"{blocker}:{ROOT}"
    done = _crawl(env, tmp_path, folder)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert ("FILES_STORE='s3://store/videos': the S3 store needs the botocore, boto3 package(s), which are not "
            "installed (pip install -r requirements.txt)" in out), out[-3000:]  # fmt: skip
    assert not redis_client.exists(f"{key_prefix}:videos")


def test_a_bucket_to_crawl_that_cannot_be_listed_stops_the_local_spider_at_start(buckets):
    from crawler.spiders.local import LocalSpider

    buckets.make("inbox")
    spider = LocalSpider()
    assert spider.start_payload_url(f" {buckets.scheme}://inbox/raw/ ") == f"{buckets.scheme}://inbox/raw/"
    with pytest.raises(StorageError, match=rf"^{buckets.scheme}://nowhere/raw/: the bucket 'nowhere' cannot be read"):
        spider.start_payload_url(f"{buckets.scheme}://nowhere/raw/")
