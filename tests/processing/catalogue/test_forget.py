"""Takedowns: ``python -m processing forget`` removes a video everywhere; later crawls reject it.

The end-to-end test runs what a user runs (crawl the local test site, work, forget, search,
export, crawl again) on a real Redis, Scrapy, Ray and the embedded catalogue. The others check
the parts on both catalogue backends (the noida-db Elasticsearch-API emulator, not
Elasticsearch) and the near-dup index's own files.
"""

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.provenance import CopyBook
from crawler.takedowns import Tombstones
from processing.catalogue import SearchQuery
from processing.forget import Forgetter
from processing.stages.neardup import NearDupStage
from processing.vision.frame_index import FrameIndex, add_forgotten, locked, read_forgotten
from processing.work import Work
from tests.conftest import DATA, PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import make_doc, vid


def run(args, env, timeout=400, ok=True):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def feed(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_forget_removes_a_video_everywhere_and_later_crawls_reject_it(tmp_path, site, redis_client, data_dir,
                                                                      key_prefix):  # fmt: skip
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, LABELERS="", PROCESSING_NUM_WORKERS=1,
                      DOWNLOAD_TIMEOUT=10, RETRY_TIMES=0)  # fmt: skip
    keys = RedisKeys(key_prefix)

    def crawl(name, *pages):
        for page in pages:
            redis_client.rpush("web:start_urls", json.dumps({"url": f"{site}/{page}", "meta": {"depth": 0}}))
        run(["-m", "scrapy", "crawl", "web", "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=3", "-O", str(tmp_path / name),
             "-s", f"LOG_FILE={tmp_path / (name + '.log')}"], env)  # fmt: skip
        return feed(tmp_path / name)

    # bikes at two URLs (two pages), gradio_b on a third
    items = crawl("first.jsonl", "source-tag.html", "license.html", "jsonld.html")
    bikes = hashlib.sha256((DATA / "bikes.mp4").read_bytes()).hexdigest()
    gradio_b = hashlib.sha256((DATA / "gradio_b.mp4").read_bytes()).hexdigest()
    assert sorted(i["video_id"] for i in items) == sorted([bikes, bikes, gradio_b]), items
    run(["-m", "processing", "work", "--until-empty", "--no-progress"], env)
    doc = json.loads(run(["-m", "processing", "duplicates", bikes[:12], "--json"], env).stdout)["canonical"]
    stored = {doc["path"], *(c["path"] for c in doc["copies"])}
    thumb = doc["thumbnail_path"]
    assert all(p and (data_dir / "videos") in Path(p).parents for p in stored), stored
    assert all(os.path.exists(p) for p in [*stored, thumb])
    [model_dir] = [p.parent for p in (data_dir / "index").glob("*/meta.json")]
    dim = json.loads((model_dir / "meta.json").read_text())["dim"]
    assert FrameIndex.load(model_dir, dim, 1000).by_id.get(bikes) is not None

    # forget by a copy's URL: the video goes, with both its URLs
    out = run(["-m", "processing", "forget", "--url", f"{site}/media/bikes.mp4?variant=cc"], env).stdout
    assert "forgot 1 video(s):" in out and bikes[:16] in out, out
    assert "near-duplicate index: 1 video(s) purged" in out and "opted_out: forgotten" in out, out
    hits = json.loads(run(["-m", "processing", "search", "", "--status", "any", "--json"], env).stdout)["hits"]
    assert [h["video_id"] for h in hits] == [gradio_b]
    gone = run(["-m", "processing", "duplicates", bikes[:16]], env, ok=False)
    assert gone.returncode == 1 and f"no video '{bikes[:16]}' in the catalogue" in gone.stderr
    assert not any(os.path.exists(p) for p in [*stored, thumb])  # files and thumbnail deleted
    meta = json.loads((model_dir / "meta.json").read_text())
    index = FrameIndex.load(model_dir, meta["dim"], 1000)
    assert not index.videos[index.by_id[bikes]]["alive"]
    assert set(np.unique(index.owners)) == {index.by_id[gradio_b]}  # its vectors are gone, not only hidden
    assert read_forgotten(data_dir / "index") == {bikes}
    run(["-m", "processing", "export", "--out", str(tmp_path / "export")], env)
    rows = [json.loads(x) for x in (tmp_path / "export" / "videos.jsonl").read_text().splitlines()]
    assert [r["video_id"] for r in rows] == [gradio_b]
    assert bikes not in json.loads((tmp_path / "export" / "duplicates.json").read_text())
    ledger = Ledger(redis_client, keys)
    assert ledger.get(f"{site}/media/bikes.mp4")["error"] == "opted_out: forgotten"
    assert ledger.get(f"{site}/media/bikes.mp4?variant=cc")["status"] == "rejected"
    assert CopyBook(redis_client, keys).entries(bikes) == []

    # crawl again: both URLs are refused before any download (a query added to them too), and the
    # same bytes at a new URL after it
    stream_before = redis_client.xlen(keys.stream)
    again = crawl("again.jsonl", "source-tag.html", "license.html")
    redis_client.rpush("web:start_urls", f"{site}/upload.wikimedia.org/bikes-reupload.mp4")  # the same bytes
    fresh = crawl("fresh.jsonl")
    assert sorted((i["url"], i["status"], i["errors"]) for i in again) == [
        (f"{site}/media/bikes.mp4", "rejected", {"takedown": "opted_out: forgotten"}),
        (f"{site}/media/bikes.mp4?variant=cc", "rejected", {"takedown": "opted_out: forgotten"})]
    [new] = fresh
    assert (new["status"], new["errors"], new["video_id"]) == ("rejected", {"dedup": "opted_out: forgotten"}, bikes)
    assert new["path"] is None and not list((data_dir / "videos").rglob("*bikes*"))  # its bytes deleted too
    assert redis_client.xlen(keys.stream) == stream_before  # nothing reached the workers
    st = json.loads(run(["-m", "processing", "status", "--json"], env).stdout)
    assert st["rejected"] == 3 and st["indexed"] == 1


@pytest.fixture(params=["sqlite", "emulator"])
def backend(request, data_dir):
    """An empty catalogue of each backend."""
    if request.param == "sqlite":
        from processing.catalogue import SqliteCatalogue

        cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
        yield cat
        cat.close()
        return
    import uuid

    from processing.catalogue.elastic import ElasticCatalogue

    cat = ElasticCatalogue(request.getfixturevalue("es_emulator"), index=f"videopipe-test-{uuid.uuid4().hex[:8]}",
                           text_vectors=False, refresh_each=True)  # fmt: skip
    yield cat
    cat.delete()
    cat.close()


def test_forget_by_domain_url_and_prefix_on_either_backend(backend, redis_client, data_dir, key_prefix, tmp_path):
    keys = RedisKeys(key_prefix)
    store = data_dir / "videos" / "full"
    store.mkdir(parents=True)
    files = {n: store / f"{n}.mp4" for n in ("dog", "pup", "bikes")}
    for f in files.values():
        f.write_bytes(b"not really a video")
    own = tmp_path / "my-videos" / "bikes.mp4"  # a local crawl's source file: the user's, never deleted
    own.parent.mkdir()
    own.write_bytes(b"x")
    dog = make_doc("dog", "Dog", path=files["dog"], license="CC BY 4.0")
    dog["url"] = "https://cdn.example.org/dog.mp4"
    dog["copies"] = [{"url": "https://mirror.example.net/dog.mp4", "path": str(files["pup"]), "kind": "exact"}]
    bikes = make_doc("bikes", "Bikes", path=own, source="local")
    bikes["url"] = own.as_uri()
    copy = make_doc("bikes-copy", "Bikes again", status="duplicate", duplicate_of=vid("bikes"), similarity=0.93,
                    path=files["bikes"])  # fmt: skip
    world = make_doc("world", "World")
    backend.upsert([dog, bikes, copy, world])
    backend.refresh()
    index_dir = data_dir / "index"
    index = FrameIndex(4, 1000)
    for n, name in enumerate(("dog", "bikes", "bikes-copy", "world")):
        index.add(vid(name), np.eye(4, dtype=np.float32)[n : n + 1].repeat(3, axis=0))
    with locked(index_dir):
        index.save(index_dir / "model-a")
    forgetter = Forgetter(backend, redis_client, keys, index_dir=index_dir, owned_dirs=[data_dir])

    # a domain: the copy's mirror names the dog video; nothing is changed by a dry run
    dry = forgetter.forget(domains=["example.net"], dry_run=True)
    assert [v["video_id"] for v in dry.videos] == [vid("dog")] and backend.get(vid("dog")) is not None
    report = forgetter.forget(domains=["example.net"])
    assert [v["video_id"] for v in report.videos] == [vid("dog")]
    assert sorted(report.files_deleted) == sorted([str(files["dog"]), str(files["pup"])])
    assert backend.get(vid("dog")) is None and report.index_vectors == 1
    # a local path: the whole cluster (the near-duplicate too); the user's own file stays
    report = forgetter.forget(urls=[own.as_uri()])
    assert sorted(v["video_id"] for v in report.videos) == sorted([vid("bikes"), vid("bikes-copy")])
    assert report.files_deleted == [str(files["bikes"])] and report.files_left == [str(own)] and own.exists()
    assert [h.video_id for h in backend.search(SearchQuery(status="any", semantic=False)).hits] == [vid("world")]
    on_disk = FrameIndex.load(index_dir / "model-a", 4, 1000)
    assert len(on_disk) == 1 and on_disk.ntotal == 3  # world's 3 vectors, nothing else
    assert read_forgotten(index_dir) == {vid("dog"), vid("bikes"), vid("bikes-copy")}
    # the tombstones: by URL (any form), id and domain
    stones = Tombstones(redis_client, keys)
    assert stones.match_url("HTTPS://CDN.example.org/dog.mp4#t=3") == "url:cdn.example.org/dog.mp4"
    assert stones.match_url("https://video.mirror.example.net/other.mp4") == "domain:example.net"
    assert stones.match_url(own.as_uri()) and stones.has_video(vid("bikes-copy"))
    assert stones.match_url("https://example.org/elsewhere.mp4") is None and not stones.has_video(vid("world"))
    assert backend.resolve_id(vid("world")[:8]) == [vid("world")]


def test_the_near_dup_stage_purges_what_forget_lists_and_rejects_it_later(tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index", frame_threshold=0.9, min_match=0.5, approx_threshold=1000,
                         phash_max_distance=-1, flush_seconds=0)  # fmt: skip
    stage.setup()
    vecs = np.eye(4, dtype=np.float32)

    def work(name, row):
        item = VideoItem(url=f"https://e.org/{name}.mp4", source="web", video_id=vid(name))
        item.embedding_model = "m"
        return Work(item, embeddings=vecs[row : row + 1].repeat(2, axis=0))

    stage.process_batch([work("a", 0), work("b", 1)])
    assert len(stage.indexes["m"]) == 2
    with locked(tmp_path / "index"):  # what `forget` does while the actor runs
        add_forgotten(tmp_path / "index", [vid("a")])
    again = work("a", 0)
    stage.process_batch([again])
    assert len(stage.indexes["m"]) == 1 and stage.indexes["m"].ntotal == 2  # purged in memory, vectors too
    assert (again.item.status, again.item.errors) == ("rejected", {"neardup": "opted_out: forgotten"})
    saved = FrameIndex.load(stage.folder("m"), 4, 1000)  # and its save does not bring it back
    assert [v["video_id"] for v in saved.videos if v["alive"]] == [vid("b")]

