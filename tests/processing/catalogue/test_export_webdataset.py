"""`export --format webdataset`: tar shards read back with the webdataset library, as a trainer reads them."""

import json
import subprocess
import tarfile
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from processing.catalogue import SqliteCatalogue
from processing.catalogue.export import Exporter
from processing.catalogue.shards import parse_size
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import corpus, make_doc, unit, vid

wds = pytest.importorskip("webdataset")
KEPT = {vid(n) for n in ("dog", "puppy", "bikes", "phone", "world")}


@pytest.fixture
def cat(data_dir, media, tmp_path):
    with SqliteCatalogue() as c:
        c.upsert(corpus(media, tmp_path / "thumbs"))
        yield c


def read_back(out):
    """Every sample of the export's shards, through webdataset's own reader and decoders."""
    pattern = json.loads((out / "shards.json").read_text())["pattern"]
    ds = wds.WebDataset(str(out / pattern), shardshuffle=False).decode("pil")
    return {s["__key__"]: s for s in ds}


def test_shards_hold_each_kept_video_its_document_thumbnail_and_embedding(cat, media, tmp_path):
    out = tmp_path / "wds"
    report = Exporter(cat, out, "webdataset", shard_size="1.2MB").run()
    samples = read_back(out)
    assert set(samples) == KEPT and report["rows"] == 5
    assert report["shards"] == len(list(out.glob("videos-*.tar"))) >= 3  # 1.2 MB each at most
    for key, s in samples.items():
        doc = cat.get(key)
        assert s["mp4"] == open(doc["path"], "rb").read()  # the stored file, byte for byte
        assert s["json"]["video_id"] == key and s["json"]["title"] == doc["title"] and "vector" not in s["json"]
        assert isinstance(s["jpg"], Image.Image) and s["jpg"].size == Image.open(doc["thumbnail_path"]).size
        assert s["npy"].dtype == np.float32 and np.allclose(s["npy"], doc["vector"])
    for shard in json.loads((out / "shards.json").read_text())["shards"]:
        size = (out / shard["file"]).stat().st_size
        assert size == shard["bytes"] and (size <= 1_200_000 or shard["samples"] == 1)
    with tarfile.open(out / "videos-000000.tar") as tar:  # a sample's members lie together
        names = tar.getnames()
    assert [n.split(".")[1] for n in names[:4]] == ["mp4", "json", "jpg", "npy"]
    assert len({n.split(".")[0] for n in names[:4]}) == 1


def test_nsfw_videos_are_left_out_by_default_and_kept_when_asked(cat, media, tmp_path):
    flagged = make_doc("flagged", "Flagged clip", vector=unit(1, 1, 0, 0), path=media["gradio_b"],
                       labels={"nsfw": {"model": "nudenet", "score": 0.9, "present": True}}, duration=5.0)
    cat.upsert([flagged])
    report = Exporter(cat, tmp_path / "a", "webdataset").run()
    assert vid("flagged") not in read_back(tmp_path / "a") and report["filtered"] == {"nsfw": 1}
    assert report["nsfw_unlabeled"] == 5  # the corpus' other videos were never labelled for NSFW
    Exporter(cat, tmp_path / "b", "webdataset", nsfw=False).run()
    assert vid("flagged") in read_back(tmp_path / "b")
    manifest = Exporter(cat, tmp_path / "c", "jsonl").run()  # manifests keep it unless asked
    assert manifest["rows"] == 6 and "nsfw_unlabeled" not in manifest


def test_a_shard_count_spreads_the_videos_and_old_shards_go(cat, tmp_path):
    out = tmp_path / "wds"
    Exporter(cat, out, "webdataset", shard_size="1").run()  # one video per shard: 5 shards
    assert len(list(out.glob("videos-*.tar"))) == 5
    report = Exporter(cat, out, "webdataset", shard_count=2).run()
    shards = json.loads((out / "shards.json").read_text())
    assert [s["samples"] for s in shards["shards"]] == [3, 2] and report["shards"] == 2
    assert sorted(p.name for p in out.glob("videos-*")) == ["videos-000000.tar", "videos-000001.tar"]
    assert shards["pattern"] == "videos-{000000..000001}.tar" and set(read_back(out)) == KEPT


def test_a_video_is_streamed_into_the_tar_never_read_whole(data_dir, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(24_000_000))
    with SqliteCatalogue() as cat:
        cat.upsert([make_doc("big", "Big one", path=big, duration=60.0)])
        tracemalloc.start()
        Exporter(cat, tmp_path / "out", "webdataset").run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4_000_000, f"export held {peak} bytes for a 24 MB video"
    with tarfile.open(tmp_path / "out" / "videos-000000.tar") as tar:
        assert tar.getmember(f"{vid('big')}.mp4").size == 24_000_000


def test_missing_files_are_skipped_and_counted(data_dir, media, tmp_path):
    with SqliteCatalogue() as cat:
        cat.upsert([make_doc("gone", "Gone", path=tmp_path / "nope.mp4"), make_doc("uri", "R", path=(tmp_path / "nope2.mp4").as_uri()),
                    make_doc("plain", "No thumbnail, no vector", path=media["gradio_b"])])
        report = Exporter(cat, tmp_path / "out", "webdataset").run()
    assert report["skipped"] == {"no_video_file": 2} and report["rows"] == 1
    assert report["missing"] == {"embedding": 1, "thumbnail": 1}
    assert {k for k in read_back(tmp_path / "out")[vid("plain")] if not k.startswith("__")} == {"mp4", "json"}


def test_sizes_parse_as_people_write_them():
    assert parse_size("1GB") == 10**9 and parse_size("500MiB") == 500 * 2**20 and parse_size("1.5m") == 1_500_000
    for bad in ("", "12 parsecs", "0", "-1GB"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_command_as_a_user_types_it(cat, tmp_path):
    out = tmp_path / "shards"
    done = subprocess.run(
        [PYTHON, "-m", "processing", "export", "--format", "webdataset", "--shard-size", "2MB", "--out", str(out)],
        cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wrote 5 video(s) into ") and "videos-{000000.." in lines[0]
    assert "nsfw: 0 flagged video(s) left out (--include-nsfw keeps them); 5 written had no nsfw label" in lines
    assert set(read_back(out)) == KEPT
    bad = subprocess.run(
        [PYTHON, "-m", "processing", "export", "--format", "webdataset", "--shard-size", "big", "--out", str(out)],
        cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: shard size must be")
    assert bad.stdout == ""
