"""Export filters for training sets (duration, resolution, licence, tags, NSFW) on every format."""

import argparse
import csv
import json

import pyarrow.parquet as pq
import pytest

from processing.catalogue import SqliteCatalogue
from processing.catalogue.export import ExportFilter, Exporter
from tests.processing.catalogue.corpus import corpus, make_doc, unit, vid


# Licences as sources give them (raw), set here so that the expectations below do not move.
LICENCES = {"dog": "https://creativecommons.org/licenses/by/4.0/", "puppy": "CC BY 3.0",
            "bikes": "http://creativecommons.org/publicdomain/zero/1.0/", "phone": None,
            "world": "Attribution-ShareAlike 4.0 International"}  # fmt: skip


@pytest.fixture
def cat(data_dir, media, tmp_path):
    docs = corpus(media, tmp_path / "thumbs")
    for doc in docs:
        doc["license"] = LICENCES.get(next((n for n in LICENCES if vid(n) == doc["video_id"]), ""), doc["license"])
    with SqliteCatalogue() as c:
        c.upsert(docs)
        c.upsert([make_doc("flagged", "Flagged", vector=unit(1, 1, 1, 1), duration=9.0, width=640, height=360,
                           license="CC0", path=media["gradio_b"],
                           labels={"nsfw": {"model": "nudenet", "score": 0.91, "present": True}}),
                  make_doc("nc", "Non-commercial", vector=unit(1, 0, 1, 1), duration=3.0, width=320, height=180,
                           license="https://creativecommons.org/licenses/by-nc/4.0/", path=media["gradio_b"])])
        yield c


def ids(cat, tmp_path, fmt="jsonl", **filters):
    """The video ids an export of ``fmt`` writes with ``filters``."""
    nsfw = filters.pop("nsfw", None)
    out = tmp_path / f"{fmt}-{len(list(tmp_path.iterdir()))}"
    Exporter(cat, out, fmt, filters=ExportFilter(**filters), nsfw=nsfw).run()
    if fmt == "jsonl":
        return {json.loads(x)["video_id"] for x in (out / "videos.jsonl").read_text().splitlines()}
    if fmt == "csv":
        return {r["video_id"] for r in csv.DictReader((out / "videos.csv").open())}
    if fmt == "parquet":
        return set(pq.read_table(out / "videos.parquet").column("video_id").to_pylist())
    if fmt == "embeddings":
        return set(pq.read_table(out / "embeddings.parquet").column("video_id").to_pylist())
    import webdataset as wds

    pattern = json.loads((out / "shards.json").read_text())["pattern"]
    return {s["__key__"] for s in wds.WebDataset(str(out / pattern), shardshuffle=False)}


def names(*ns):
    return {vid(n) for n in ns}


def test_each_filter(cat, tmp_path):
    assert ids(cat, tmp_path) == names("dog", "puppy", "bikes", "phone", "world", "flagged", "nc")
    assert ids(cat, tmp_path, min_duration=10) == names("dog", "puppy", "bikes")
    assert ids(cat, tmp_path, min_duration=6, max_duration=15) == names("puppy", "phone", "flagged")
    assert ids(cat, tmp_path, min_width=1280) == names("puppy", "bikes")
    assert ids(cat, tmp_path, min_height=400) == names("puppy", "bikes", "world")
    assert ids(cat, tmp_path, tags=["Seashore"]) == names("dog")  # a label tag, any case
    assert ids(cat, tmp_path, tags=["demo", "pets"]) == set()  # every tag must be there
    assert ids(cat, tmp_path, nsfw=True) == names("dog", "puppy", "bikes", "phone", "world", "nc")


def test_licence_ids_and_families(cat, tmp_path):
    assert ids(cat, tmp_path, license="cc-by") == names("dog", "puppy")  # CC-BY-* only: not -SA, not -NC
    assert ids(cat, tmp_path, license="CC-BY-4.0") == names("dog")
    assert ids(cat, tmp_path, license="cc-by-sa") == names("world")
    assert ids(cat, tmp_path, license="cc-by-nc") == names("nc")
    assert ids(cat, tmp_path, license="open") == names("dog", "puppy", "bikes", "world", "flagged")
    assert ids(cat, tmp_path, license="unknown") == names("phone")
    with pytest.raises(ValueError, match="names no licence"):
        ExportFilter(license="whatever I like")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "webdataset", "embeddings"])
def test_the_filters_apply_to_every_format(cat, tmp_path, fmt):
    kept = ids(cat, tmp_path, fmt, min_duration=6, license="open", nsfw=False)
    assert kept == names("dog", "puppy", "bikes", "flagged")
    assert ids(cat, tmp_path, fmt, min_duration=6, license="open", nsfw=True) == names("dog", "puppy", "bikes")


def test_bad_filters_are_one_clear_line(cat, tmp_path, capsys):
    from processing.catalogue.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for argv, message in ((["--license", "nonsense"], "error: --license 'nonsense' names no licence"),
                          (["--min-duration", "-3"], "error: min_duration must be a non-negative number"),
                          (["--format", "webdataset", "--include-duplicates"], "error: include_duplicates is for")):
        args = parser.parse_args(["export", "--out", str(tmp_path / "x"), *argv])
        assert args.func(args) == 2
        assert capsys.readouterr().err.startswith(message)
    args = parser.parse_args(["export", "--license", "cc-by", "--tag", "pets", "--out", str(tmp_path / "ok")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 1 row(s)") and "left out by filters: license 5, tag 1" in out
