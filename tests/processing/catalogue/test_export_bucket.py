"""`export --out s3://bucket/prefix` (and gs://): every format written into a bucket, videos read from one.

Against STAND-INS on loopback (tests/objectstore.py: moto's S3 server, gcp-storage-emulator),
not S3 or GCS. The documents name their videos and thumbnails by object URI, as a catalogue
built with ``FILES_STORE=s3://...`` does; what the bucket holds afterwards is read back the way a
trainer reads it (pyarrow, webdataset, PyAV).
"""

import argparse
import csv
import io
import json

import av
import pyarrow.parquet as pq
import pytest

from crawler.items import VideoItem
from processing.catalogue import SqliteCatalogue
from processing.catalogue.cli import register
from processing.catalogue.export import FORMATS, Exporter
from processing.stages.scenes import ScenesStage
from processing.work import Work
from tests.processing.catalogue.corpus import corpus, make_doc, vid
from tests.processing.cutclip import DURATION, FIRST_FRAMES, SECOND_FRAMES, two_shot_clip

KEPT = {vid(n) for n in ("dog", "puppy", "bikes", "phone", "world", "two")}
LOCAL: dict[tuple[str, str], str] = {}  # (video id, "path" / "thumbnail_path") -> the local file uploaded


@pytest.fixture
def cat(data_dir, media, tmp_path, buckets):
    """The corpus plus a two-shot clip with its scenes, every video and thumbnail in the bucket ``media``."""
    buckets.make("media")
    buckets.make("exports")
    src = two_shot_clip(tmp_path / "two.mp4", keyframe_at_cut=True)
    stage = ScenesStage()
    stage.setup()
    work = Work(VideoItem(url="file://two", source="local", path=str(src), video_id=vid("two")))
    stage.process_batch([work])
    docs = corpus(media, tmp_path / "thumbs") + [
        make_doc("two", "Two shots", path=src, fps=25.0, duration=DURATION, width=320, height=180)
        | {"scenes": work.item.scenes}]  # fmt: skip
    for doc in docs:
        for field in ("path", "thumbnail_path"):
            if doc.get(field):
                LOCAL[(doc["video_id"], field)] = local = doc[field]  # where the object's bytes came from
                key = f"{field}/{doc['video_id']}-{local.rsplit('/', 1)[-1]}"
                doc[field] = buckets.put(open(local, "rb").read(), "media", key)
    with SqliteCatalogue() as c:
        c.upsert(docs)
        yield c
    LOCAL.clear()


def test_every_format_is_written_into_the_bucket(cat, buckets, tmp_path):
    wds = pytest.importorskip("webdataset")
    scheme = buckets.scheme
    for fmt in FORMATS:
        report = Exporter(cat, f"{scheme}://exports/{fmt}/", fmt).run()
        keys = buckets.keys("exports", f"{fmt}/")
        assert not [k for k in keys if k.endswith(".tmp")], keys  # every file renamed into place
        assert report["duplicates_file"] == f"{scheme}://exports/{fmt}/duplicates.json"
        dupmap = json.loads(buckets.read("exports", f"{fmt}/duplicates.json"))
        assert dupmap[vid("world")]["duplicates"] == sorted([vid("world-copy"), vid("world-copy2")])
        body = lambda name: buckets.read("exports", f"{fmt}/{name}")  # noqa: E731
        if fmt == "jsonl":
            rows = [json.loads(line) for line in body("videos.jsonl").decode().splitlines()]
            assert report["file"] == f"{scheme}://exports/jsonl/videos.jsonl"
            assert {r["video_id"] for r in rows} == KEPT
            assert all(r["path"].startswith(f"{scheme}://media/") for r in rows)
        elif fmt == "csv":
            assert {r["video_id"] for r in csv.DictReader(io.StringIO(body("videos.csv").decode()))} == KEPT
        elif fmt == "parquet":
            assert set(pq.read_table(io.BytesIO(body("videos.parquet"))).column("video_id").to_pylist()) == KEPT
        elif fmt == "embeddings":
            table = pq.read_table(io.BytesIO(body("embeddings.parquet")))
            assert set(table.column("video_id").to_pylist()) == KEPT - {vid("two")} and report["rows"] == 5
        elif fmt == "webdataset":
            index = json.loads(body("shards.json"))
            local = tmp_path / "shards"
            local.mkdir()
            for shard in index["shards"]:  # a trainer copies (or streams) the shards out of the bucket
                (local / shard["file"]).write_bytes(body(shard["file"]))
                assert len(body(shard["file"])) == shard["bytes"]
            reader = wds.WebDataset(str(local / index["pattern"]), shardshuffle=False)
            samples = {s["__key__"]: s for s in reader}
            assert set(samples) == KEPT and report["skipped"] == {}
            assert report["missing"] == {"embedding": 1, "thumbnail": 1}  # the two-shot clip has neither
            for key, sample in samples.items():  # the object's bytes, and its thumbnail from the bucket
                assert sample["mp4"] == open(LOCAL[(key, "path")], "rb").read()
                if (key, "thumbnail_path") in LOCAL:
                    assert sample["jpg"] == open(LOCAL[(key, "thumbnail_path")], "rb").read()
        elif fmt == "clips":
            clips = [json.loads(line) for line in body("clips.jsonl").decode().splitlines()]
            names = [f"clips/clips/{vid('two')}-{n:04d}.mp4" for n in (0, 1)]
            assert [c["path"] for c in clips] == [f"{scheme}://exports/{n}" for n in names]
            assert keys == sorted([*names, "clips/clips.jsonl", "clips/duplicates.json"])
            for clip, frames in zip(clips, (FIRST_FRAMES, SECOND_FRAMES)):
                data = body(f"clips/{clip['clip_id']}.mp4")
                assert len(data) == clip["size_bytes"]
                with av.open(io.BytesIO(data)) as c:
                    assert sum(1 for _ in c.decode(video=0)) == frames  # frame-exact, as on disk

    # a second, smaller export into the same prefix leaves no shard of the first behind
    Exporter(cat, f"{scheme}://exports/webdataset", "webdataset", shard_size="1").run()
    assert len([k for k in buckets.keys("exports", "webdataset/") if k.endswith(".tar")]) == 6
    Exporter(cat, f"{scheme}://exports/webdataset", "webdataset", shard_count=2).run()
    assert [k for k in buckets.keys("exports", "webdataset/") if ".tar" in k] == [
        "webdataset/videos-000000.tar", "webdataset/videos-000001.tar"]


def test_an_export_to_a_bucket_that_is_not_there_writes_nothing_and_says_why(cat, buckets, capsys):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--out", f"{buckets.scheme}://nowhere/x", "--format", "parquet"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {buckets.scheme}://nowhere/x: the bucket 'nowhere' cannot be read"), err


def test_a_document_whose_object_is_gone_is_skipped(cat, buckets, data_dir):
    cat.upsert([make_doc("gone", "Gone", path=f"{buckets.scheme}://media/no/such.mp4")])
    report = Exporter(cat, f"{buckets.scheme}://exports/w", "webdataset").run()
    assert report["skipped"] == {"no_video_file": 1} and report["rows"] == len(KEPT)
