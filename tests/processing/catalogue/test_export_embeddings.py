"""`export --format embeddings`: Parquet with video_id + a fixed-size vector column, the model in the metadata."""

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.catalogue import SqliteCatalogue
from processing.catalogue.export import EMBEDDINGS_BATCH, Exporter
from tests.processing.catalogue.corpus import MODEL, corpus, make_doc, unit, vid


@pytest.fixture
def cat(data_dir, media, tmp_path):
    with SqliteCatalogue() as c:
        c.upsert(corpus(media, tmp_path / "thumbs"))
        yield c


def test_vectors_of_the_kept_videos_with_the_model_in_the_schema(cat, tmp_path):
    report = Exporter(cat, tmp_path, "embeddings").run()
    table = pq.read_table(tmp_path / "embeddings.parquet")
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 4)
    assert table.schema.field("video_id").type == pa.string() and table.num_columns == 2
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["embedding_model"] == MODEL and meta["dim"] == "4"
    rows = {r["video_id"]: r["vector"] for r in table.to_pylist()}
    assert set(rows) == {vid(n) for n in ("dog", "puppy", "bikes", "phone", "world")} and report["rows"] == 5
    assert np.allclose(rows[vid("dog")], cat.get(vid("dog"))["vector"])
    assert (report["embedding_model"], report["dim"]) == (MODEL, 4)


def test_models_are_never_mixed(cat, tmp_path):
    cat.upsert([make_doc("clip", "Embedded by CLIP", vector=unit(1, 2, 3), embedding_model="clip:tiny"),
                make_doc("none", "No vector")])
    report = Exporter(cat, tmp_path / "a", "embeddings").run()
    assert report["skipped"] == {"model:clip:tiny": 1, "no_embedding": 1} and report["rows"] == 5
    report = Exporter(cat, tmp_path / "b", "embeddings", embedding_model="clip:tiny").run()
    table = pq.read_table(tmp_path / "b" / "embeddings.parquet")
    assert table.column("video_id").to_pylist() == [vid("clip")]
    assert table.schema.metadata[b"embedding_model"] == b"clip:tiny"
    assert table.schema.field("vector").type.list_size == 3
    assert report["skipped"][f"model:{MODEL}"] == 5


def test_many_vectors_are_written_in_row_groups(data_dir, tmp_path):
    rng = np.random.default_rng(1)
    n = EMBEDDINGS_BATCH + 10
    with SqliteCatalogue() as cat:
        cat.upsert([make_doc(f"v{i}", f"video {i}", vector=[float(x) for x in rng.normal(size=8)]) for i in range(n)])
        Exporter(cat, tmp_path, "embeddings").run()
    f = pq.ParquetFile(tmp_path / "embeddings.parquet")
    assert f.metadata.num_rows == n and f.metadata.num_row_groups == 2


def test_the_command_with_a_filter(cat, tmp_path, capsys):
    from processing.catalogue.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--embeddings", "--min-width", "1000", "--out", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote 2 vector(s) of {MODEL} (dim 4) to {tmp_path / 'embeddings.parquet'}")
    assert "left out by filters: resolution 3" in out
    ids = pq.read_table(tmp_path / "embeddings.parquet").column("video_id").to_pylist()
    assert sorted(ids) == sorted([vid("puppy"), vid("bikes")])
    args = parser.parse_args(["export", "--embeddings", "--json", "--out", str(tmp_path)])
    assert args.func(args) == 0 and json.loads(capsys.readouterr().out)["rows"] == 5
