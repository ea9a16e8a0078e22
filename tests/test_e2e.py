"""The whole path as a user runs it: `scrapy crawl` -> `python -m processing work` -> `status` / `search`.

Real everything: the local HTTP test site or a folder of real clips, Scrapy with every
pipeline, Redis (the embedded server for the web run, as `make demo` uses it), Ray, the
project's own stages and catalogue. Each test checks what a user checks: which videos were
indexed, which are duplicates of which, the counts `status` prints, a search that finds the
video it should, and (with KEY_PREFIX) that nothing is written outside the chosen prefix.
"""

import hashlib
import json
import shutil
import subprocess

import pytest
import redis

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from tests.conftest import DATA, PYTHON, ROOT, project_env

pytestmark = pytest.mark.slow

CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_b", "gradio_world")


def run(args, env, timeout=600):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clusters(docs: dict[str, dict]) -> dict[str, set[str]]:
    """Indexed video id -> the ids of the duplicates pointing at it (the catalogue's clusters)."""
    out = {vid: set() for vid, d in docs.items() if d["status"] == "indexed"}
    for vid, d in docs.items():
        if d["status"] == "duplicate":
            out[d["duplicate_of"]].add(vid)  # KeyError: a duplicate of something not indexed
    return out


def catalogue_docs(env) -> dict[str, dict]:
    """Every document of the catalogue, by video id (through the search CLI, as a user would)."""
    docs = {}
    for status in ("indexed", "duplicate"):
        hits = json.loads(run(["-m", "processing", "search", "", "--status", status, "--limit", "100",
                               "--json"], env))["hits"]  # fmt: skip
        docs.update({h["video_id"]: h["doc"] for h in hits})
    return docs


def test_web_crawl_to_a_searchable_deduplicated_catalogue(tmp_path, site, embedded_redis, data_dir, key_prefix):
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, DOWNLOAD_TIMEOUT=3,
                      RETRY_TIMES=0, LABELERS="imagenet,faces")  # fmt: skip
    env.pop("REDIS_URL", None)
    feed = tmp_path / "items.jsonl"
    run(["-m", "scrapy", "crawl", "web", "-a", f"url={site}/", "-a", "depth=2", "-O", str(feed),
         "-s", f"LOG_FILE={tmp_path / 'crawl.log'}"], env)  # fmt: skip
    items = [json.loads(line) for line in feed.read_text().splitlines()]
    assert items, (tmp_path / "crawl.log").read_text()[-3000:]
    crawl_counts: dict[str, int] = {}
    for item in items:
        crawl_counts[item["status"]] = crawl_counts.get(item["status"], 0) + 1

    # The crawl handed the workers each distinct clip of the site once, plus the HLS remux of
    # bigbuckbunny (other bytes: only the workers can see it is the same video).
    name = {sha256(DATA / f"{c}.mp4"): c for c in CLIPS}
    queued = {i["video_id"]: i for i in items if i["status"] == "queued"}
    hls = [vid for vid, i in queued.items() if i["url"].endswith("/hls/bbb/index.m3u8")]
    assert len(hls) == 1 and set(queued) - set(hls) == set(name), [i["url"] for i in queued.values()]
    name[hls[0]] = "bbb_hls"
    ids = {n: vid for vid, n in name.items()}

    out = run(["-m", "processing", "work", "--until-empty", "--no-progress"], env)
    # the run's counts are each batch's decisions when written (a cut kept first and demoted by
    # its source in a later batch counts "indexed" there); the catalogue below has the final states
    assert "processed 7 videos" in out, out

    # Which videos were kept, and which are duplicates of which. The canonical copy of a
    # cluster depends on the order the copies arrived in (issue 9 makes it order-free), so
    # each cluster is checked as a whole: one indexed video, the others pointing at it.
    docs = catalogue_docs(env)
    assert set(docs) == set(queued)
    found = sorted(sorted(name[v] for v in {kept, *dups}) for kept, dups in clusters(docs).items())
    assert found == [["bbb_hls", "bigbuckbunny"], ["bikes"], ["carphone_pristine"], ["gradio_a"],
                     ["gradio_b", "gradio_world"]]  # fmt: skip
    for vid, doc in docs.items():
        if doc["status"] == "duplicate":
            assert 0.8 <= doc["similarity"] <= 1.0, doc
        else:
            assert doc["labels"]["imagenet"]["model"] == "efficientnet-lite0" == doc["embedding_model"]
            assert doc["labels"]["faces"]["model"] and doc["processed_at"]

    # `status` says what the ledger and the catalogue hold, and what the stages did.
    st = json.loads(run(["-m", "processing", "status", "--json"], env))
    expected = {"indexed": 5, "duplicate": crawl_counts.get("duplicate", 0) + 2,
                "rejected": crawl_counts.get("rejected", 0), "failed": crawl_counts.get("failed", 0)}  # fmt: skip
    assert {k: st[k] for k in expected} == expected
    assert (st["queued"], st["in_progress"], st["backlog"], st["dead_lettered"]) == (0, 0, 0, 0)
    assert st["catalogue"] == {"indexed": 5, "duplicate": 2}
    assert Ledger(redis.Redis.from_url(embedded_redis), key_prefix).counts() == expected
    stages = st["stages"]
    assert [stages[s]["videos"] for s in ("frames", "embed", "neardup")] == [7, 7, 7]
    # clusters: each started by a "kept" video (a later better copy, "kept_better", takes over one)
    assert (stages["frames"]["ok"], stages["neardup"]["kept"] - stages["neardup"].get("merged", 0)) == (7, 5)
    assert stages["labels"]["imagenet/ok"] == stages["labels"]["videos"] >= 5

    # Searching finds the kept videos only, by their labels too: the man in a suit and bow tie.
    hits = json.loads(run(["-m", "processing", "search", "bow tie", "--json"], env))["hits"]
    assert hits and hits[0]["video_id"] == ids["carphone_pristine"]
    assert all(docs[h["video_id"]]["status"] == "indexed" for h in hits)
    everything = json.loads(run(["-m", "processing", "search", "", "--limit", "100", "--json"], env))["hits"]
    assert {h["video_id"] for h in everything} == set(clusters(docs))


def test_key_prefix_moves_every_key_of_crawl_work_and_status(tmp_path, media, redis_url, data_dir, key_prefix):
    folder = tmp_path / "clips"
    folder.mkdir()
    for n in ("bikes", "gradio_a", "carphone_pristine"):
        shutil.copy(media[n], folder / f"{n}.mp4")
    shutil.copy(media["gradio_a"], folder / "gradio_a_copy.mp4")  # the same bytes: an exact duplicate
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["bikes"]), "-c:v", "libx264", "-crf", "35", "-an",
                    str(folder / "bikes_crf35.mp4")], check=True)  # a re-encode: a near duplicate
    (folder / "broken.mp4").write_text("<html>not a video</html>\n" * 50)
    env = project_env(DATA_DIR=data_dir, LABELERS="imagenet")  # KEY_PREFIX and REDIS_URL: the test's
    run(["-m", "scrapy", "crawl", "local", "-a", f"path={folder}", "-s", f"KEY_PREFIX={key_prefix}",
         "-s", f"LOG_FILE={tmp_path / 'crawl.log'}"], env | {"KEY_PREFIX": "vp"})  # only -s sets it

    out = run(["-m", "processing", "work", "--until-empty", "--no-progress"], env)
    assert "processed 4 videos" in out and "duplicate 1, indexed 3" in out, out
    st = json.loads(run(["-m", "processing", "status", "--json"], env))

    keys = RedisKeys(key_prefix)
    assert st["stream"]["key"] == keys.stream and st["stream"]["length"] == 5  # 4 videos + the copy's provenance
    assert {k: st[k] for k in ("queued", "indexed", "duplicate", "rejected", "failed")} == {
        "queued": 0, "indexed": 3, "duplicate": 2, "rejected": 1, "failed": 0}
    assert (st["in_progress"], st["backlog"], st["dead_lettered"]) == (0, 0, 0)
    # the exact copy has no document of its own: its place is in the canonical's `copies`
    assert st["catalogue"] == {"indexed": 3, "duplicate": 1}
    assert st["stages"]["frames"]["videos"] == st["stages"]["neardup"]["videos"] == 4
    docs = catalogue_docs(env)
    by_name = {d["url"].rsplit("/", 1)[-1]: d for d in docs.values()}
    assert by_name["bikes_crf35.mp4"]["duplicate_of"] == by_name["bikes.mp4"]["video_id"]
    assert by_name["bikes.mp4"]["status"] == "indexed"

    client = redis.Redis.from_url(redis_url)
    written = sorted(k.decode() for k in client.scan_iter("*"))
    outside = [k for k in written if not k.startswith(f"{key_prefix}:") and not k.startswith("local:")]
    assert not outside, written  # nothing under the default prefix or any other
    assert keys.stream in written and keys.ledger in written and keys.stage_stats in written
