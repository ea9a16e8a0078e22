"""Elasticsearch backend without a server: template, documents, queries, bulk retries, the requests sent.

The retry, request and es-setup tests talk to real local HTTP servers that answer like the
endpoints under test (stand-ins, named as such: they are not Elasticsearch). The backend
against a live ES-API server is in test_elastic_live.py.
"""

import argparse
import json

import pytest

from processing.catalogue import CatalogueConfig, SearchQuery
from processing.catalogue.cli import register
from processing.catalogue.elastic import (
    BulkError,
    ElasticCatalogue,
    bulk_write,
    index_template,
    parse_response,
    search_body,
    similar_body,
    to_es_doc,
)
from processing.catalogue.kibana import KIBANA_DIR
from tests.processing.catalogue.corpus import make_doc, unit, vid
from tests.processing.catalogue.standins import BulkStandIn, Es8StandIn, KibanaStandIn, RecordingStandIn, serving

CFG = CatalogueConfig.from_settings(url="", bm25_weight=0.5, semantic_k=200, facet_size=20)


def es_setup(*argv):
    """The es-setup command as ``python -m processing`` parses it."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["es-setup", *argv])
    return args.func(args)


def test_index_template_has_explicit_mappings():
    tpl = index_template("videos")
    assert tpl["index_patterns"] == ["videos-*"]
    props = tpl["template"]["mappings"]["properties"]
    assert tpl["template"]["mappings"]["dynamic"] is False
    for name in ("title", "description", "caption", "ocr_text", "transcript"):
        assert props[name]["type"] == "text" and props[name]["fields"]["keyword"]["type"] == "keyword"
    for name in ("tags", "source", "license", "license_id", "places", "domains", "extractor", "platform_id",
                 "video_codec", "audio_codec", "status", "duplicate_of"):
        assert props[name]["type"] == "keyword"
    for name, kind in (("duration", "float"), ("width", "integer"), ("size_bytes", "long"), ("fetched_at", "date")):
        assert props[name]["type"] == kind
    for name in ("vector", "text_vector"):
        assert props[name] == {"type": "dense_vector", "index": True, "similarity": "cosine"}


def test_document_carries_searchable_fields_and_the_original():
    doc = make_doc("dog", "A dog", vector=unit(1, 0), tags=["Pets"], license="CC-BY", width=640, height=360,
                   labels={"caption": {"model": "m", "text": "a dog runs"}, "ocr": {"model": "o", "text": "EXIT"},
                           "imagenet": {"model": "e", "tags": [{"name": "seashore", "score": 0.5}]}},
                   errors={"speech": "no_audio"}, fetched_at="not a date")  # fmt: skip
    es = to_es_doc(doc, text_vector=[0.6, 0.8], text_model="all-MiniLM-L6-v2")
    assert es["tags"] == ["pets", "seashore"] and es["license"] == "cc-by" and es["resolution"] == "640x360"
    assert es["license_id"] == "CC-BY"  # the raw value stays beside its normalised id
    assert (es["caption"], es["ocr_text"], es["transcript"]) == ("a dog runs", "EXIT", "")
    assert es["vector"] == doc["vector"] and es["embedding_model"] == "efficientnet-lite0"
    assert es["text_vector"] == [0.6, 0.8] and es["error_stages"] == ["speech"]
    assert "fetched_at" not in es  # an unparsable date is left out, not rejected by the mapping
    assert es["doc"]["title"] == "A dog" and "vector" not in es["doc"]
    props = index_template("videos")["template"]["mappings"]["properties"]
    assert set(es) <= set(props), set(es) - set(props)


def test_search_body_filters_facets_knn_and_paging():
    q = SearchQuery("dog on a beach", tags=["Dog"], source="web", license="CC-BY", min_duration=10,
                    min_height=720, page=3, per_page=10)
    body = search_body(q, CFG, query_vector=[0.1, 0.2])
    assert (body["from"], body["size"]) == (20, 10)
    filters = body["query"]["bool"]["filter"]
    cc_by = {"terms": {"license_id": ["CC-BY-1.0", "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0", "CC-BY"]}}
    assert {"term": {"tags": "dog"}} in filters and cc_by in filters  # the family: never -SA, -NC, -ND
    assert {"term": {"status": "indexed"}} in filters and {"range": {"duration": {"gte": 10}}} in filters
    assert {"range": {"height": {"gte": 720}}} in filters
    mm = body["query"]["bool"]["must"][0]["multi_match"]
    assert mm["query"] == "dog on a beach" and "title^3" in mm["fields"] and mm["boost"] == 0.5
    assert body["knn"]["field"] == "text_vector" and body["knn"]["filter"] == filters
    assert body["knn"]["boost"] == 0.5 and body["knn"]["k"] >= 30
    assert set(body["aggs"]) == {"tags", "sources", "licenses"}
    plain = search_body(SearchQuery(), CFG)
    assert "knn" not in plain and plain["sort"][0] == {"indexed_at": {"order": "desc", "unmapped_type": "date"}}
    sim = similar_body([1.0, 0.0], "efficientnet-lite0", vid("dog"), SearchQuery(), 20)
    assert sim["knn"]["field"] == "vector"
    assert {"term": {"embedding_model": "efficientnet-lite0"}} in sim["knn"]["filter"]["bool"]["filter"]
    assert sim["knn"]["filter"]["bool"]["must_not"] == [{"ids": {"values": [vid("dog")]}}]


def test_response_becomes_the_common_result():
    resp = {"hits": {"total": {"value": 42, "relation": "eq"}, "hits": [
        {"_id": vid("dog"), "_score": 3.5, "_source": {"title": "A dog", "doc": make_doc("dog", "A dog")}}]},
        "aggregations": {"tags": {"buckets": [{"key": "dog", "doc_count": 7}]}, "sources": {"buckets": []}}}
    result = parse_response(SearchQuery("dog"), resp)
    assert result.total == 42 and result.backend == "elasticsearch"
    assert result.hits[0].video_id == vid("dog") and result.hits[0].doc["title"] == "A dog"
    assert result.facets == {"tags": [("dog", 7)], "sources": []}


# --- bulk writes, against a stand-in for the _bulk endpoint ------------------------------------
@pytest.fixture
def bulk_server():
    from elasticsearch import Elasticsearch

    BulkStandIn.script, BulkStandIn.seen = [], []
    with serving(BulkStandIn) as url:
        client = Elasticsearch(url, max_retries=0, request_timeout=10)
        yield client
        client.close()


def actions(*names):
    return [{"_op_type": "index", "_index": "videos", "_id": vid(n), "_source": {"title": n}} for n in names]


def test_bulk_retries_429_then_5xx_items_with_backoff(bulk_server):
    BulkStandIn.script = [429, {vid("b"): 503}, {}]
    sleeps = []
    report = bulk_write(bulk_server, actions("a", "b", "c"), max_retries=4, backoff=0.5, chunk_size=500,
                        sleep=sleeps.append)
    assert report == {"written": 3, "retries": 2}
    assert sleeps == [0.5, 1.0]  # exponential back-off
    assert [ids for _, ids in BulkStandIn.seen] == [
        [vid("a"), vid("b"), vid("c")],  # refused as a whole (429)
        [vid("a"), vid("b"), vid("c")],  # b: 503
        [vid("b")],  # only the failed one again, same _id: idempotent
    ]
    assert BulkStandIn.seen[0][0].startswith("/_bulk")


def test_bulk_gives_up_after_max_retries_and_names_rejected_documents(bulk_server):
    BulkStandIn.script = [{vid("bad"): 400, vid("busy"): 429}, {vid("busy"): 429}, {vid("busy"): 429}]
    with pytest.raises(BulkError) as err:
        bulk_write(bulk_server, actions("ok", "bad", "busy"), max_retries=2, backoff=0.01, chunk_size=500,
                   sleep=lambda s: None)
    failures = err.value.failures
    assert failures[vid("bad")].startswith("rejected_400") and failures[vid("busy")] == "http_429"
    assert vid("ok") not in failures
    assert len(BulkStandIn.seen) == 3  # the 400 was never retried: only "busy" went again


def test_bulk_retries_when_the_server_is_unreachable():
    from elasticsearch import Elasticsearch

    client = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2)
    sleeps = []
    with pytest.raises(BulkError) as err:
        bulk_write(client, actions("a"), max_retries=2, backoff=0.01, chunk_size=500, sleep=sleeps.append)
    assert err.value.failures[vid("a")].startswith("connection_error") and sleeps == [0.01, 0.02]


def test_es_setup_without_elasticsearch_url_says_so(capsys):
    assert es_setup() == 2 and "ELASTICSEARCH_URL is not set" in capsys.readouterr().err


def test_es_setup_says_elasticsearch_9_is_needed_when_the_server_refuses_the_client(monkeypatch, capsys):
    import settings

    with serving(Es8StandIn) as url:  # answers as Elasticsearch 8 answers the 9.x client
        monkeypatch.setattr(settings, "ELASTICSEARCH_URL", url)
        assert es_setup() == 1
    err = capsys.readouterr().err
    assert "this project needs Elasticsearch 9.x" in err and "media_type_header_exception" in err


# --- the requests ElasticCatalogue and es-setup send, recorded by a stand-in -------------------
def test_catalogue_requests_template_alias_bulk_and_search():
    RecordingStandIn.calls = []
    with serving(RecordingStandIn) as url, ElasticCatalogue(url, index="videos", text_vectors=False) as cat:
        assert cat.setup() == {"template": "videos", "alias": "videos", "created_index": "videos-000001",
                               "server_version": "9.1.0", "warning": None}
        cat.upsert([make_doc("dog", "A dog", vector=unit(1, 0)), make_doc("cat", "A cat")])
        assert cat.get(vid("nothing")) is None
        result = cat.search(SearchQuery("dog", tags=["pets"]))
    calls = RecordingStandIn.calls
    assert [(m, p) for m, p, _ in calls[:4]] == [
        ("GET", "/"), ("PUT", "/_index_template/videos"), ("HEAD", "/_alias/videos"), ("PUT", "/videos-000001")]
    template = json.loads(calls[1][2])
    assert template["index_patterns"] == ["videos-*"] and "mappings" in template["template"]
    assert json.loads(calls[3][2])["aliases"] == {"videos": {"is_write_index": True}}
    bulk = [json.loads(x) for x in next(b for m, p, b in calls if p == "/_bulk").splitlines()]
    assert [a["index"] for a in bulk[0::2]] == [{"_index": "videos", "_id": vid("dog")},
                                                {"_index": "videos", "_id": vid("cat")}]
    assert bulk[1]["vector"] == unit(1, 0) and bulk[1]["doc"]["title"] == "A dog"
    search = json.loads(next(b for m, p, b in calls if p == "/videos/_search"))
    assert {"term": {"tags": "pets"}} in search["query"]["bool"]["filter"] and "knn" not in search
    assert result.total == 0 and result.backend == "elasticsearch"


def test_catalogue_sends_minilm_text_vectors_and_a_hybrid_query():
    RecordingStandIn.calls = []
    with serving(RecordingStandIn) as url, ElasticCatalogue(url, index="videos", text_vectors=True) as cat:
        cat.upsert([make_doc("dog", "A dog running on the beach"), make_doc("blank", None)])
        cat.search(SearchQuery("puppy at the seaside"))
    bulk = [json.loads(x) for x in next(b for m, p, b in RecordingStandIn.calls if p == "/_bulk").splitlines()]
    dog, blank = bulk[1], bulk[3]
    assert len(dog["text_vector"]) == 384 and dog["text_model"] == "all-MiniLM-L6-v2"
    assert "text_vector" not in blank  # nothing to embed
    search = json.loads(next(b for m, p, b in RecordingStandIn.calls if p == "/videos/_search"))
    qv = search["knn"]["query_vector"]
    assert len(qv) == 384 and sum(a * b for a, b in zip(qv, dog["text_vector"])) > 0.4


def test_es_setup_command_puts_template_alias_and_imports_kibana_objects(monkeypatch, capsys):
    import settings

    RecordingStandIn.calls, KibanaStandIn.received = [], []
    with serving(RecordingStandIn) as es_url, serving(KibanaStandIn) as kibana_url:
        monkeypatch.setattr(settings, "ELASTICSEARCH_URL", es_url)
        monkeypatch.setattr(settings, "KIBANA_URL", kibana_url)
        assert es_setup() == 0
    printed = capsys.readouterr()
    assert "index template 'videos' and alias 'videos' ready; created videos-000001" in printed.out
    assert "Elasticsearch API version 9.1.0" in printed.out and printed.err == ""  # a 9.x server: no warning
    objects = [line for line in (KIBANA_DIR / "videopipe.ndjson").read_text().splitlines() if line]
    assert f"videopipe.ndjson ({len(objects)} objects)" in printed.out
    assert ("PUT", "/_index_template/videos") in [(m, p) for m, p, _ in RecordingStandIn.calls]
    assert KibanaStandIn.received[0][0] == "/api/saved_objects/_import?overwrite=true"
