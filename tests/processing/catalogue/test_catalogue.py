"""The SQLite catalogue (upsert/get/list/counts, duplicates, old files) and the exports."""

import argparse
import csv
import json
import sqlite3

import pyarrow.parquet as pq
import pytest

from processing.catalogue import SearchQuery, SqliteCatalogue, open_catalogue
from processing.catalogue.export import Exporter
from tests.processing.catalogue.corpus import corpus, make_doc, vid


@pytest.fixture
def cat(data_dir):
    with SqliteCatalogue() as c:
        yield c


def test_upsert_get_list_counts_replace_by_id(cat):
    a = make_doc("a", "first title")
    b = make_doc("b", "second", status="failed", errors={"probe": "timeout"})
    cat.upsert([a, b])
    cat.upsert([{**a, "title": "renamed"}])  # idempotent by video_id: replaced, not added
    assert cat.get(vid("a"))["title"] == "renamed"
    assert cat.get("0" * 64) is None
    assert cat.counts() == {"indexed": 1, "failed": 1}
    assert [d["video_id"] for d in cat.list(status="failed")] == [vid("b")]
    assert len(cat.list()) == 2 and len(cat.list(limit=1, offset=1)) == 1
    hits = cat.search(SearchQuery("renamed", semantic=False)).hits
    assert [h.doc["title"] for h in hits] == ["renamed"]
    assert cat.search(SearchQuery("first", semantic=False)).total == 0  # the old text is gone
    assert open_catalogue().get(vid("a"))["title"] == "renamed"  # the default backend is this file


def test_the_backend_is_chosen_by_the_url_scheme(data_dir):
    from processing.catalogue.elastic import ElasticCatalogue

    with open_catalogue(str(data_dir / "other.sqlite")) as c:  # a file path: the embedded catalogue there
        assert isinstance(c, SqliteCatalogue) and c.path == data_dir / "other.sqlite"
    with open_catalogue("http://127.0.0.1:9") as c:  # no request is sent until it is used
        assert isinstance(c, ElasticCatalogue)
    with pytest.raises(ValueError, match="no catalogue backend for 'ftp://x'"):
        open_catalogue("ftp://x")


def test_a_caption_from_the_source_is_searchable_when_no_model_wrote_one(cat):
    listed = make_doc("listed", "clip 0001")
    listed["caption"] = "a dog catches a frisbee"  # a URL list's caption column
    captioned = make_doc("captioned", "clip 0002", labels={"caption": {"text": "a cat asleep on a sofa"}})
    captioned["caption"] = "frisbee"  # the model's caption wins over the source's
    cat.upsert([listed, captioned])
    assert [h.video_id for h in cat.search(SearchQuery("frisbee", semantic=False)).hits] == [vid("listed")]
    assert [h.video_id for h in cat.search(SearchQuery("sofa", semantic=False)).hits] == [vid("captioned")]


def test_odd_documents_are_stored_and_still_searchable(cat):
    odd = make_doc("odd", "Odd one", license=42, labels={"ocr": "not a dict", "caption": {"text": None},
                                                          "imagenet": {"tags": ["plain", {"name": None}]}})
    odd["vector"] = [0.0, 0.0]  # a zero vector: stored, not indexed for similarity
    odd["width"] = "wide"
    cat.upsert([odd])
    assert cat.get(vid("odd"))["width"] == "wide"
    hits = cat.search(SearchQuery("odd", semantic=False)).hits
    assert [h.video_id for h in hits] == [vid("odd")]
    assert "plain" in [t for t, _ in cat.search(SearchQuery(semantic=False)).facets["tags"]]
    assert cat.similar(vid("odd")).total == 0


def test_an_older_catalogue_file_is_indexed_when_opened(data_dir):
    path = data_dir / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE videos (video_id TEXT PRIMARY KEY, status TEXT NOT NULL, url TEXT, source TEXT,"
               " duplicate_of TEXT, updated_at TEXT, doc TEXT NOT NULL)")
    doc = make_doc("legacy", "Legacy sunset timelapse", tags=["sunset"])
    db.execute("INSERT INTO videos VALUES (?,?,?,?,?,?,?)",
               (doc["video_id"], "indexed", doc["url"], "web", None, "2026-01-01", json.dumps(doc)))
    db.commit()
    db.close()
    with SqliteCatalogue(path) as c:
        assert c.search(SearchQuery("sunset", semantic=False)).total == 1
        assert c.search(SearchQuery(tags=["sunset"])).total == 1


def test_duplicate_cluster_from_either_side(cat, media, tmp_path):
    cat.upsert(corpus(media, tmp_path / "thumbs"))
    for asked in (vid("world"), vid("world-copy2")):
        cluster = cat.duplicates(asked)
        assert cluster["canonical"]["video_id"] == vid("world")
        assert [(d["video_id"], d["similarity"]) for d in cluster["duplicates"]] == [
            (vid("world-copy"), 0.987), (vid("world-copy2"), 0.95)]
    assert cat.duplicates(vid("dog"))["duplicates"] == []
    assert cat.duplicates("f" * 64) is None


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_writes_kept_videos_and_the_duplicate_map(cat, media, tmp_path, fmt):
    cat.upsert(corpus(media, tmp_path / "thumbs"))
    report = Exporter(cat, tmp_path / "out", fmt).run()
    path = tmp_path / "out" / f"videos.{fmt}"
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    elif fmt == "csv":
        rows = list(csv.DictReader(path.open()))
    else:
        rows = pq.read_table(path).to_pylist()
    assert report["rows"] == len(rows) == 5
    by_id = {r["video_id"]: r for r in rows}
    assert set(by_id) == {vid(n) for n in ("dog", "puppy", "bikes", "phone", "world")}
    dog = by_id[vid("dog")]
    assert dog["path"] == str(media["bigbuckbunny"]) and dog["status"] == "indexed"
    assert dog["caption"] == "a dog runs along the sand"
    all_tags = dog["all_tags"] if fmt == "jsonl" else json.loads(dog["all_tags"])
    assert all_tags == ["pets", "golden retriever", "seashore"]
    assert float(dog["duration"]) == 20.0
    assert "vector" not in dog
    dupmap = json.loads((tmp_path / "out" / "duplicates.json").read_text())
    assert list(dupmap) == [vid("world")]
    assert dupmap[vid("world")]["duplicates"] == sorted([vid("world-copy"), vid("world-copy2")])
    places = dupmap[vid("world")]["places"]  # every place of the cluster, with source and licence
    assert [(p["kind"], p["video_id"]) for p in places] == [
        ("canonical", vid("world")), ("near", vid("world-copy")), ("near", vid("world-copy2"))]
    assert places[0]["url"] == "https://videos.example.org/world.mp4" and places[0]["license_id"] == "CC-BY-SA-4.0"
    assert dog["license"] == "https://creativecommons.org/licenses/by/4.0/" and dog["license_id"] == "CC-BY-4.0"


def test_csv_export_defuses_cells_a_spreadsheet_would_run_as_formulas(cat, tmp_path):
    titles = {"eq": '=HYPERLINK("http://evil.example","click")', "at": "@SUM(A1:A9)", "plus": "+1+2",
              "minus": "-2+3", "tab": "\t=1", "plain": "a normal title - with a dash"}
    cat.upsert([make_doc(name, title) for name, title in titles.items()])
    Exporter(cat, tmp_path / "out", "csv").run()
    rows = {r["video_id"]: r for r in csv.DictReader((tmp_path / "out" / "videos.csv").open())}
    for name, title in titles.items():
        cell = rows[vid(name)]["title"]
        assert cell == (title if name == "plain" else "'" + title)
    jsonl = Exporter(cat, tmp_path / "j", "jsonl").run()  # other formats keep the text as it is
    assert jsonl["rows"] == len(titles)
    assert {json.loads(line)["title"] for line in (tmp_path / "j" / "videos.jsonl").open()} == set(titles.values())


def test_export_cli_with_duplicates(cat, media, tmp_path, capsys):
    from processing.catalogue.cli import register

    cat.upsert(corpus(media, tmp_path / "thumbs"))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--format", "jsonl", "--out", str(tmp_path / "o"),
                              "--include-duplicates", "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = [json.loads(x) for x in (tmp_path / "o" / "videos.jsonl").read_text().splitlines()]
    assert report["rows"] == len(rows) == 7
    copy = next(r for r in rows if r["video_id"] == vid("world-copy"))
    assert copy["status"] == "duplicate" and copy["duplicate_of"] == vid("world")
    assert report["catalogue"] == {"indexed": 5, "duplicate": 2, "failed": 1, "rejected": 1}
