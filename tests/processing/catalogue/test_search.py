"""Embedded search: FTS5 + MiniLM blend, filters, facets, paging, --similar, and the CLI."""

import argparse
import json
import subprocess

import pytest

from processing.catalogue import SearchQuery, SqliteCatalogue
from processing.catalogue.sqlite import EmbeddedSearch
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import corpus, make_doc, unit, vid


@pytest.fixture(scope="module")
def cat(media, tmp_path_factory):
    path = tmp_path_factory.mktemp("search")
    c = SqliteCatalogue(path / "catalogue.sqlite")
    c.upsert(corpus(media, path / "thumbs"))
    yield c
    c.close()


def ids(result):
    return [h.video_id for h in result.hits]


def test_text_search_ranks_the_best_match_first_and_shows_only_kept_videos(cat):
    result = cat.search(SearchQuery("dog on a beach"))
    assert ids(result)[0] == vid("dog")
    assert vid("broken") not in ids(result) and vid("long") not in ids(result)  # failed / rejected
    assert result.hits[0].text_score == 1.0 and result.hits[0].semantic_score > 0.5
    assert "vector" not in result.hits[0].doc


def test_semantic_search_finds_words_the_text_never_uses(cat):
    q = "puppy at the seaside"
    blended = cat.search(SearchQuery("golden pup playing in the ocean"))
    assert ids(blended)[0] == vid("puppy")
    assert vid("puppy") in ids(cat.search(SearchQuery("doggy on the shore")))
    assert cat.search(SearchQuery("doggy on the shore", semantic=False)).total == 0  # BM25 alone misses it
    assert vid("bikes") not in ids(cat.search(SearchQuery(q)))


def test_ocr_transcript_and_caption_text_are_searchable(cat):
    assert ids(cat.search(SearchQuery("carphone", semantic=False))) == [vid("phone")]
    assert ids(cat.search(SearchQuery("riders jump", semantic=False))) == [vid("bikes")]
    assert ids(cat.search(SearchQuery("sand", semantic=False))) == [vid("dog")]


def test_filters_and_facet_counts(cat):
    everything = cat.search(SearchQuery())
    assert everything.total == 5
    assert dict(everything.facets["sources"]) == {"web": 4, "archive": 1}
    # licences are normalised (crawler/licenses.py): the facet counts SPDX ids, not raw URLs and names
    assert dict(everything.facets["licenses"]) == {"CC-BY-4.0": 2, "CC0-1.0": 1, "CC-BY-SA-4.0": 1, "unknown": 1}
    assert dict(everything.facets["tags"])["demo"] == 1  # the duplicate's tag is not counted
    assert ids(cat.search(SearchQuery(tags=["Golden Retriever"]))) == [vid("dog")]
    assert ids(cat.search(SearchQuery(source="archive"))) == [vid("bikes")]
    assert set(ids(cat.search(SearchQuery(license="CC-BY")))) == {vid("dog"), vid("puppy")}  # the family, not -SA
    assert set(ids(cat.search(SearchQuery(license="cc-by-4.0")))) == {vid("dog"), vid("puppy")}  # an id: exact
    assert ids(cat.search(SearchQuery(license="CC-BY-3.0"))) == []
    assert ids(cat.search(SearchQuery(license="cc-by-sa"))) == [vid("world")]
    assert set(ids(cat.search(SearchQuery(license="open")))) == {vid("dog"), vid("puppy"), vid("bikes"), vid("world")}
    assert ids(cat.search(SearchQuery(license="unknown"))) == [vid("phone")]
    assert ids(cat.search(SearchQuery(license="https://creativecommons.org/publicdomain/zero/1.0/"))) == [vid("bikes")]
    assert set(ids(cat.search(SearchQuery(min_duration=10)))) == {vid("dog"), vid("puppy"), vid("bikes")}
    assert set(ids(cat.search(SearchQuery(min_duration=10, max_duration=25)))) == {vid("dog"), vid("puppy")}
    assert set(ids(cat.search(SearchQuery(min_height=720)))) == {vid("puppy"), vid("bikes")}
    combined = cat.search(SearchQuery("dog", license="cc-by", min_duration=15))
    assert ids(combined) == [vid("dog")] and dict(combined.facets["licenses"]) == {"CC-BY-4.0": 1}
    with pytest.raises(ValueError, match="names no licence"):
        SearchQuery(license="all rights reserved")


def test_status_filter_reaches_every_state(cat):
    assert {h.doc["status"] for h in cat.search(SearchQuery(status="any", per_page=50)).hits} == {
        "indexed", "duplicate", "failed", "rejected"}
    assert ids(cat.search(SearchQuery("dog", status="failed", semantic=False))) == [vid("broken")]


def test_paging_covers_every_hit_once(cat):
    pages = [cat.search(SearchQuery(page=p, per_page=2)) for p in (1, 2, 3, 4)]
    seen = [i for r in pages for i in ids(r)]
    assert [len(r.hits) for r in pages] == [2, 2, 1, 0] and len(set(seen)) == 5
    assert all(r.total == 5 for r in pages)


def test_similar_returns_nearest_kept_videos_of_the_same_model(cat):
    result = cat.similar(vid("dog"))
    assert ids(result)[0] == vid("puppy")
    assert vid("dog") not in ids(result)
    assert vid("world-copy") not in ids(result)  # duplicates are not "kept"
    assert result.hits[0].score == pytest.approx(0.95 / (0.95**2 + 0.3**2) ** 0.5, abs=1e-4)
    assert cat.similar(vid("world"), SearchQuery(status=None)).hits[0].video_id == vid("world-copy")
    assert ids(cat.similar(vid("dog"), SearchQuery(source="archive"))) == [vid("bikes")]


def test_vectors_of_another_model_are_never_compared(tmp_path):
    with SqliteCatalogue(tmp_path / "c.sqlite") as c:
        c.upsert([make_doc("a", "a", vector=unit(1, 0, 0)),
                  make_doc("b", "b", vector=unit(1, 0, 0), embedding_model="clip-vit-b-32"),
                  make_doc("c", "c", vector=unit(1, 1, 0))])  # fmt: skip
        assert ids(c.similar(vid("a"))) == [vid("c")]
        assert c.similar(vid("b")).total == 0


@pytest.mark.parametrize("text", ['"', "AND OR NOT (", "*", "title:dog", "ünïcødé 🐶", "-", "NEAR(a b)", "a" * 5000])
def test_hostile_query_text_never_raises(cat, text):
    result = cat.search(SearchQuery(text, semantic=False))
    assert result.total >= 0


def test_bad_query_values_are_refused_with_a_message():
    with pytest.raises(ValueError, match="per_page"):
        SearchQuery(per_page=0)
    with pytest.raises(ValueError, match="min_duration"):
        SearchQuery.from_params({"min_duration": ["ten"]})
    q = SearchQuery.from_params({"q": ["dog"], "tag": ["A", "b"], "page": ["2"], "status": ["any"]})
    assert (q.text, q.tags, q.page, q.status) == ("dog", ["a", "b"], 2, None)


def test_search_and_duplicates_commands_through_register(cat, capsys, monkeypatch):
    import settings
    from processing.catalogue.cli import register

    monkeypatch.setattr(settings, "CATALOGUE_PATH", str(cat.path))
    monkeypatch.setattr(settings, "ELASTICSEARCH_URL", "")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))

    args = parser.parse_args(["search", "dog", "on", "a", "beach", "--license", "cc-by", "--min-duration", "10", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["video_id"] == vid("dog") and out["total"] >= 1

    args = parser.parse_args(["search", "--similar", vid("dog")])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].split()[2] == vid("puppy")[:16]

    args = parser.parse_args(["duplicates", vid("world-copy"), "--json"])
    assert args.func(args) == 0
    cluster = json.loads(capsys.readouterr().out)
    assert cluster["canonical"]["video_id"] == vid("world")
    assert [(d["video_id"], d["similarity"]) for d in cluster["duplicates"]][0] == (vid("world-copy"), 0.987)

    args = parser.parse_args(["search", "--similar", "0" * 64])
    assert args.func(args) == 1 and "no video" in capsys.readouterr().err


def test_python_m_processing_search_as_users_type_it(cat, tmp_path):
    env = project_env(CATALOGUE_PATH=str(cat.path), ELASTICSEARCH_URL="", SEARCH_SEMANTIC="0")
    run = lambda *a: subprocess.run([PYTHON, "-m", "processing", *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    res = run("search", "mountain bikes", "--tag", "sport", "--source", "archive", "--json")
    assert res.returncode == 0, res.stderr
    assert [h["video_id"] for h in json.loads(res.stdout)["hits"]] == [vid("bikes")]
    res = run("duplicates", vid("world"))
    assert res.returncode == 0, res.stderr
    assert "similarity=0.9870" in res.stdout and vid("world-copy") in res.stdout


class StandInClipText:
    """A stand-in for a CLIP text tower (no CLIP weights exist here): fixed vectors per word."""

    name = "clip-test"
    space = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}

    def encode(self, texts):
        import numpy as np

        return np.asarray([self.space[t] for t in texts], dtype=np.float32)


def test_text_to_video_hook_searches_descriptors_of_the_clip_model(tmp_path, monkeypatch):
    import settings

    monkeypatch.setattr(settings, "SEARCH_SEMANTIC", False)  # only the CLIP hook scores text here

    with SqliteCatalogue(tmp_path / "c.sqlite") as c:
        c.upsert([make_doc("r", "clip one", vector=unit(0.9, 0.1, 0), embedding_model="clip-test"),
                  make_doc("g", "clip two", vector=unit(0.1, 0.9, 0), embedding_model="clip-test"),
                  make_doc("o", "other model", vector=unit(0, 1, 0))])  # fmt: skip
        search = EmbeddedSearch(c, embedder=None, text_to_video=StandInClipText())
        assert ids(search.search(SearchQuery("green")))[0] == vid("g")
        assert vid("o") not in ids(search.search(SearchQuery("green")))  # another model's descriptor


def test_text_vectors_are_embedded_once_capped_per_query_and_warmed(tmp_path):
    with SqliteCatalogue(tmp_path / "c.sqlite") as c:
        c.upsert([make_doc(f"d{i}", f"clip number {i} of a harbour at night") for i in range(5)])
        c.upsert([make_doc("untitled", None)])  # no text: nothing to embed
        stored = lambda: c.db.execute("SELECT COUNT(*) FROM search_text_vectors").fetchone()[0]  # noqa: E731
        c.searcher.embed_limit = 2  # as `serve` sets it
        c.search(SearchQuery("harbour"))
        assert stored() == 2
        assert c.searcher.warm_text_vectors(batch=2) == 3 and stored() == 5
        c.upsert([make_doc("d0", "now a mountain lake")])  # changed text: embedded again
        assert c.searcher.refresh_text_vectors() == 1
        assert ids(c.search(SearchQuery("alpine water", semantic=True)))[0] == vid("d0")


def test_an_older_catalogue_file_gets_its_licences_normalised_on_open(tmp_path):
    import sqlite3

    from processing.catalogue.sqlite import SCHEMA

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # the schema before license_id, with a document the old code wrote
    db.executescript(SCHEMA.replace(", license_id TEXT", ""))
    old = make_doc("dog", "A dog", license="http://creativecommons.org/licenses/by-sa/3.0/")
    old.pop("license_id")
    db.execute("INSERT INTO videos (video_id, status, url, source, doc) VALUES (?, 'indexed', ?, 'web', ?)",
               (old["video_id"], old["url"], json.dumps(old)))  # fmt: skip
    db.execute("INSERT INTO search_facts (video_id, status, source, license) VALUES (?, 'indexed', 'web', ?)",
               (old["video_id"], old["license"]))  # fmt: skip
    db.commit()
    db.close()
    with SqliteCatalogue(path) as cat:
        assert ids(cat.search(SearchQuery(license="cc-by-sa", semantic=False))) == [vid("dog")]
        assert dict(cat.search(SearchQuery(semantic=False)).facets["licenses"]) == {"CC-BY-SA-3.0": 1}
