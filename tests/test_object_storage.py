"""No shared disk: crawl a bucket, keep downloads in a bucket, work, export to a bucket, as a user types it.

The object stores are STAND-INS on loopback (tests/objectstore.py): moto's S3 server for s3://
and gcp-storage-emulator for gs://, not S3 or GCS. Everything else is real: Scrapy with every
pipeline, the local HTTP test site, Redis, Ray, the stages and the catalogue, each as its own
process started the way a user starts it, configured only by the standard variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``..., ``STORAGE_EMULATOR_HOST``). What a user checks:
the same clusters as from a folder, every document naming its video by object URI, every export
format in the bucket, and no video byte of the input on this machine's disk at the end.
"""

import hashlib
import json
import subprocess

import pytest
import redis

from crawler.media_types import has_video_extension, sniff
from tests.conftest import DATA, PYTHON, ROOT, project_env

pytestmark = pytest.mark.slow

IN_BUCKET = {"raw/gradio_a.mp4": "gradio_a", "raw/gradio_b.mp4": "gradio_b", "raw/bikes.mp4": "bikes",
             "raw/sub/gradio_world.mp4": "gradio_world"}  # fmt: skip


def run(args, env, timeout=600):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def video_files(folder) -> list[str]:
    """Files under ``folder`` that are videos by name or by their first bytes."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                head = f.read(400)
            if has_video_extension(path.name) or sniff(head):
                found.append(str(path))
    return found


def test_crawl_store_work_and_export_in_buckets_with_no_video_on_local_disk(buckets, site, redis_url, data_dir,
                                                                           key_prefix, tmp_path):  # fmt: skip
    scheme = buckets.scheme
    for name in ("inbox", "store", "exports"):
        buckets.make(name)
    for key, clip in IN_BUCKET.items():
        buckets.put(DATA / f"{clip}.mp4", "inbox", key)
    buckets.put(b"just some notes\n" * 40, "inbox", "raw/notes.txt")  # listed, sniffed, rejected
    crawl_tmp = tmp_path / "crawl-tmp"  # where the crawls stage their downloads (TMPDIR)
    crawl_tmp.mkdir()
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, FILES_STORE=f"{scheme}://store/videos",
                      LABELERS="imagenet", DOWNLOAD_TIMEOUT=20, RETRY_TIMES=0)  # fmt: skip
    crawl_env = env | {"TMPDIR": str(crawl_tmp)}

    # 1. the local spider over a bucket prefix: objects listed and read in place
    feed = tmp_path / "bucket.jsonl"
    run(["-m", "scrapy", "crawl", "local", "-a", f"path={scheme}://inbox/raw/", "-O", str(feed),
         "-s", f"LOG_FILE={tmp_path / 'bucket.log'}"], crawl_env)  # fmt: skip
    listed = {i["path"]: i for i in map(json.loads, feed.read_text().splitlines())}
    assert set(listed) == {f"{scheme}://inbox/{k}" for k in [*IN_BUCKET, "raw/notes.txt"]}
    assert listed[f"{scheme}://inbox/raw/notes.txt"]["status"] == "rejected"
    sha = {clip: hashlib.sha256((DATA / f"{clip}.mp4").read_bytes()).hexdigest() for clip in
           ("gradio_a", "gradio_b", "bikes", "gradio_world", "bigbuckbunny")}  # fmt: skip
    for key, clip in IN_BUCKET.items():
        item = listed[f"{scheme}://inbox/{key}"]
        assert (item["status"], item["video_id"], item["url"]) == ("queued", sha[clip], f"{scheme}://inbox/{key}")
        assert item["duration"] and item["phash"]  # probed and hashed by ranged reads of the object

    # 2. the web spider with FILES_STORE in a bucket: a direct file and an HLS stream (yt-dlp)
    client = redis.Redis.from_url(redis_url)
    client.rpush("web:start_urls", json.dumps({"url": f"{site}/video-tag.html", "meta": {"depth": 0}}))
    feed = tmp_path / "web.jsonl"
    run(["-m", "scrapy", "crawl", "web", "-a", f"url={site}/hls.html", "-a", "depth=0", "-O", str(feed),
         "-s", f"LOG_FILE={tmp_path / 'web.log'}"], crawl_env)  # fmt: skip
    fetched = {i["url"].rsplit("/", 1)[-1]: i for i in map(json.loads, feed.read_text().splitlines())}
    assert {k: i["status"] for k, i in fetched.items()} == {"bigbuckbunny.mp4": "queued", "index.m3u8": "queued"}
    stored = buckets.keys("store")
    for item in fetched.values():
        assert item["path"] == f"{scheme}://store/videos/full/{item['video_id']}.mp4"
        assert item["path"].split("/", 3)[3] in stored
    assert fetched["bigbuckbunny.mp4"]["video_id"] == sha["bigbuckbunny"]
    assert buckets.read("store", f"videos/full/{sha['bigbuckbunny']}.mp4") == (DATA / "bigbuckbunny.mp4").read_bytes()
    assert video_files(crawl_tmp) == []  # the staged downloads went with the crawl

    # 3. work: the workers read every video from its bucket
    out = run(["-m", "processing", "work", "--until-empty", "--no-progress"], env)
    assert "processed 6 videos" in out and "duplicate 2, indexed 4" in out, out
    hits = json.loads(run(["-m", "processing", "search", "", "--status", "duplicate", "--limit", "100", "--json"], env))
    kept = json.loads(run(["-m", "processing", "search", "", "--limit", "100", "--json"], env))
    docs = {h["video_id"]: h["doc"] for h in hits["hits"] + kept["hits"]}
    assert all(d["path"].startswith(f"{scheme}://") for d in docs.values())
    name = {v: k for k, v in sha.items()} | {fetched["index.m3u8"]["video_id"]: "bbb_hls"}
    clusters = sorted(sorted([name[v], *(name[d] for d, doc in docs.items() if doc.get("duplicate_of") == v)])
                      for v, doc in docs.items() if doc["status"] == "indexed")  # fmt: skip
    assert clusters == [["bbb_hls", "bigbuckbunny"], ["bikes"], ["gradio_a"], ["gradio_b", "gradio_world"]]

    # 4. export into a bucket: the manifest by the CLI, each training format too
    for fmt in ("jsonl", "webdataset", "embeddings", "clips"):
        report = json.loads(run(["-m", "processing", "export", "--format", fmt, "--out",
                                 f"{scheme}://exports/run1/{fmt}", "--json"], env))  # fmt: skip
        assert report["rows"] >= 4 and report["file"].startswith(f"{scheme}://exports/run1/{fmt}/"), report
    rows = [json.loads(x) for x in buckets.read("exports", "run1/jsonl/videos.jsonl").decode().splitlines()]
    assert {r["video_id"] for r in rows} == {v for v, d in docs.items() if d["status"] == "indexed"}
    shards = json.loads(buckets.read("exports", "run1/webdataset/shards.json"))
    assert shards["samples"] == 4 and shards["skipped"] == {}
    tar = buckets.read("exports", f"run1/webdataset/{shards['shards'][0]['file']}")
    assert (DATA / "bikes.mp4").read_bytes() in tar  # the object's bytes, byte for byte, in the shard
    clips = [json.loads(x) for x in buckets.read("exports", "run1/clips/clips.jsonl").decode().splitlines()]
    assert clips and all(c["path"].startswith(f"{scheme}://exports/run1/clips/clips/") for c in clips)
    assert {c["path"].split("/", 3)[3] for c in clips} <= set(buckets.keys("exports", "run1/clips/clips/"))

    # nothing of the input was kept on this machine: no video file in the data dir or the crawls' temp
    assert video_files(data_dir) == [] and video_files(crawl_tmp) == []
