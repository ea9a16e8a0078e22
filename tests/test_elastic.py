"""Elasticsearch backend: template, documents, queries, bulk retries, Kibana objects; live when configured.

No Elasticsearch server can run here. The retry and Kibana-import tests talk to a real local
HTTP server that answers like the one endpoint under test (a stand-in, named as such: it is
not Elasticsearch). The live test at the bottom runs against a real cluster whenever
ELASTICSEARCH_URL is set, and is skipped otherwise.
"""

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from processing.elastic import (
    BulkError,
    ElasticCatalogue,
    bulk_write,
    index_template,
    kibana_import,
    parse_response,
    search_body,
    similar_body,
    to_es_doc,
)
from processing.search import SearchQuery
from tests.test_catalogue import make_doc, unit, vid

ROOT = Path(__file__).resolve().parent.parent
KIBANA = ROOT / "deploy" / "kibana"


def test_index_template_has_explicit_mappings():
    tpl = index_template("videos")
    assert tpl["index_patterns"] == ["videos-*"]
    props = tpl["template"]["mappings"]["properties"]
    assert tpl["template"]["mappings"]["dynamic"] is False
    for name in ("title", "description", "caption", "ocr_text", "transcript"):
        assert props[name]["type"] == "text" and props[name]["fields"]["keyword"]["type"] == "keyword"
    for name in ("tags", "source", "license", "video_codec", "audio_codec", "status", "duplicate_of"):
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
    assert (es["caption"], es["ocr_text"], es["transcript"]) == ("a dog runs", "EXIT", "")
    assert es["vector"] == doc["vector"] and es["embedding_model"] == "efficientnet-lite0"
    assert es["text_vector"] == [0.6, 0.8] and es["error_stages"] == ["speech"]
    assert "fetched_at" not in es  # an unparsable date is left out, not rejected by the mapping
    assert es["doc"]["title"] == "A dog" and "vector" not in es["doc"]
    props = index_template()["template"]["mappings"]["properties"]
    assert set(es) <= set(props), set(es) - set(props)


def test_search_body_filters_facets_knn_and_paging():
    q = SearchQuery("dog on a beach", tags=["Dog"], source="web", license="CC-BY", min_duration=10,
                    min_height=720, page=3, per_page=10)
    body = search_body(q, query_vector=[0.1, 0.2], alpha=0.5)
    assert (body["from"], body["size"]) == (20, 10)
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"tags": "dog"}} in filters and {"term": {"license": "cc-by"}} in filters
    assert {"term": {"status": "indexed"}} in filters and {"range": {"duration": {"gte": 10}}} in filters
    assert {"range": {"height": {"gte": 720}}} in filters
    mm = body["query"]["bool"]["must"][0]["multi_match"]
    assert mm["query"] == "dog on a beach" and "title^3" in mm["fields"] and mm["boost"] == 0.5
    assert body["knn"]["field"] == "text_vector" and body["knn"]["filter"] == filters
    assert body["knn"]["boost"] == 0.5 and body["knn"]["k"] >= 30
    assert set(body["aggs"]) == {"tags", "sources", "licenses"}
    plain = search_body(SearchQuery(), None)
    assert "knn" not in plain and plain["sort"][0] == {"indexed_at": {"order": "desc", "unmapped_type": "date"}}
    sim = similar_body([1.0, 0.0], "efficientnet-lite0", vid("dog"), SearchQuery())
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


# --- a real local HTTP server standing in for the _bulk endpoint ------------------------------
class BulkStandIn(BaseHTTPRequestHandler):
    """Answers POST /_bulk from a script of replies: an int (whole-request status) or a dict id->status."""

    script: list = []
    seen: list = []

    def log_message(self, *a):
        pass

    def _send(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
        lines = [json.loads(x) for x in raw.splitlines() if x.strip()]
        ids = [a["index"]["_id"] for a in lines[0::2]]
        self.seen.append((self.path, ids))
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, int):
            return self._send(step, {"error": {"type": "es_rejected_execution_exception"}, "status": step})
        items = []
        for _id in ids:
            status = step.get(_id, 201)
            item = {"_index": "videos-000001", "_id": _id, "status": status}
            if status >= 300:
                item["error"] = {"type": "mapper_parsing_exception" if status == 400 else "unavailable", "reason": "x"}
            items.append({"index": item})
        self._send(200, {"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items), "items": items})

    do_PUT = do_POST  # the client sends _bulk as PUT


@pytest.fixture
def bulk_server():
    BulkStandIn.script, BulkStandIn.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), BulkStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from elasticsearch import Elasticsearch

    client = Elasticsearch(f"http://127.0.0.1:{server.server_address[1]}", max_retries=0, request_timeout=10)
    yield client
    client.close()
    server.shutdown()
    server.server_close()


def actions(*names):
    return [{"_op_type": "index", "_index": "videos", "_id": vid(n), "_source": {"title": n}} for n in names]


def test_bulk_retries_429_then_5xx_items_with_backoff(bulk_server):
    BulkStandIn.script = [429, {vid("b"): 503}, {}]
    sleeps = []
    report = bulk_write(bulk_server, actions("a", "b", "c"), max_retries=4, backoff=0.5, sleep=sleeps.append)
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
        bulk_write(bulk_server, actions("ok", "bad", "busy"), max_retries=2, backoff=0.01, sleep=lambda s: None)
    failures = err.value.failures
    assert failures[vid("bad")].startswith("rejected_400") and failures[vid("busy")] == "http_429"
    assert vid("ok") not in failures
    assert len(BulkStandIn.seen) == 3  # the 400 was never retried: only "busy" went again


def test_bulk_retries_when_the_server_is_unreachable():
    from elasticsearch import Elasticsearch

    client = Elasticsearch("http://127.0.0.1:9", max_retries=0, request_timeout=2)
    sleeps = []
    with pytest.raises(BulkError) as err:
        bulk_write(client, actions("a"), max_retries=2, backoff=0.01, sleep=sleeps.append)
    assert err.value.failures[vid("a")].startswith("connection_error") and sleeps == [0.01, 0.02]


# --- Kibana saved objects ---------------------------------------------------------------------
def kibana_objects():
    return [json.loads(line) for f in sorted(KIBANA.glob("*.ndjson")) for line in f.read_text().splitlines() if line]


def test_kibana_objects_reference_each_other_and_mapped_fields():
    objs = kibana_objects()
    by_key = {(o["type"], o["id"]) for o in objs}
    assert len(by_key) == len(objs)
    types = {o["type"] for o in objs}
    assert {"index-pattern", "search", "dashboard", "visualization"} <= types
    for o in objs:
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in by_key, (o["id"], ref)
    props = index_template()["template"]["mappings"]["properties"]
    fields = set()
    for o in objs:
        if o["type"] == "visualization":
            for agg in json.loads(o["attributes"]["visState"])["aggs"]:
                if "field" in agg["params"]:
                    fields.add(agg["params"]["field"])
        if o["type"] == "search":
            fields.update(o["attributes"]["columns"])
    assert {"tags", "source", "duration", "resolution", "license", "duplicate_of", "status"} <= fields
    assert fields <= set(props), fields - set(props)
    dashboard = next(o for o in objs if o["type"] == "dashboard")
    assert len(json.loads(dashboard["attributes"]["panelsJSON"])) == len(dashboard["references"]) >= 7


class KibanaStandIn(BaseHTTPRequestHandler):
    """A real HTTP server standing in for Kibana's saved-objects import endpoint (not Kibana)."""

    received: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("kbn-xsrf"), self.headers["Content-Type"], body))
        n = sum(1 for line in body.split(b"\r\n\r\n", 1)[1].splitlines() if line.startswith(b"{"))
        payload = json.dumps({"success": True, "successCount": n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_kibana_import_posts_ndjson_to_the_saved_objects_api():
    KibanaStandIn.received = []
    received = KibanaStandIn.received
    server, url = serve(KibanaStandIn)
    try:
        replies = kibana_import(url + "/")
    finally:
        server.shutdown()
        server.server_close()
    path, xsrf, ctype, body = received[0]
    assert path == "/api/saved_objects/_import?overwrite=true" and xsrf == "true"
    assert ctype.startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="videopipe.ndjson"' in body
    assert replies[0]["successCount"] == len(kibana_objects())


def test_es_setup_without_elasticsearch_url_says_so(monkeypatch, capsys):
    import argparse

    import settings
    from processing.search_cli import register

    monkeypatch.setattr(settings, "ELASTICSEARCH_URL", "")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["es-setup"])
    assert args.func(args) == 2 and "ELASTICSEARCH_URL is not set" in capsys.readouterr().err


# --- live: only with a real cluster ------------------------------------------------------------
@pytest.mark.skipif(not os.environ.get("ELASTICSEARCH_URL"), reason="ELASTICSEARCH_URL not set: no live cluster")
def test_live_cluster_round_trip():
    alias = f"videopipe-test-{uuid.uuid4().hex[:8]}"
    cat = ElasticCatalogue(os.environ["ELASTICSEARCH_URL"], index=alias, refresh="wait_for")
    try:
        assert cat.setup()["created_index"] == f"{alias}-000001"
        docs = [
            make_doc("dog", "A dog running on the beach", vector=unit(1, 0, 0), tags=["pets"], duration=20.0,
                     license="CC-BY", width=640, height=360),
            make_doc("puppy", "Happy pup by the sea", vector=unit(0.9, 0.3, 0), duration=12.0),
            make_doc("bikes", "Mountain bikes", vector=unit(0, 1, 0), source="archive", duration=30.0),
            make_doc("copy", "A dog running on the beach (copy)", vector=unit(1, 0.01, 0), status="duplicate",
                     duplicate_of=vid("dog"), similarity=0.99),
        ]  # fmt: skip
        cat.upsert(docs)
        cat.upsert(docs[:1])  # idempotent by _id
        cat.client.indices.refresh(index=alias)
        assert cat.counts() == {"indexed": 3, "duplicate": 1}
        assert cat.get(vid("dog"))["title"] == "A dog running on the beach"
        result = cat.search(SearchQuery("dog on a beach"))
        assert result.hits[0].video_id == vid("dog") and vid("copy") not in [h.video_id for h in result.hits]
        assert [h.video_id for h in cat.search(SearchQuery(source="archive")).hits] == [vid("bikes")]
        assert dict(cat.search(SearchQuery()).facets["licenses"]) == {"cc-by": 1}
        assert cat.similar(vid("dog")).hits[0].video_id == vid("puppy")
        assert [d["video_id"] for d in cat.duplicates(vid("copy"))["duplicates"]] == [vid("copy")]
        new = cat.rebuild()
        assert list(cat.client.indices.get_alias(name=alias)) == [new] and cat.counts()["indexed"] == 3
    finally:
        cat.client.indices.delete(index=f"{alias}-*", ignore_unavailable=True)
        cat.client.options(ignore_status=404).indices.delete_index_template(name=alias)
        cat.close()


# --- the requests ElasticCatalogue sends, recorded by a real local HTTP server (a stand-in) ----
class RecordingStandIn(BaseHTTPRequestHandler):
    """Records every request; answers like Elasticsearch would for the few routes used here."""

    calls: list = []

    def log_message(self, *a):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode() if n else ""
        path = self.path.split("?")[0]
        self.calls.append((self.command, path, raw))
        status, payload = 200, {"acknowledged": True}
        if self.command == "HEAD" and path.startswith("/_alias/"):
            status, payload = 404, None
        elif path == "/_bulk":
            ids = [json.loads(x)["index"]["_id"] for x in raw.splitlines()[0::2] if x.strip()]
            payload = {"errors": False, "items": [{"index": {"_id": i, "status": 201}} for i in ids]}
        elif "/_doc/" in path:
            status, payload = 404, {"_id": path.rsplit("/", 1)[1], "found": False}
        elif path.endswith("/_search"):
            payload = {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []},
                       "aggregations": {"tags": {"buckets": []}}}
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


def test_catalogue_requests_template_alias_bulk_and_search():
    RecordingStandIn.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cat = ElasticCatalogue(f"http://127.0.0.1:{server.server_address[1]}", index="videos", text_vectors=False)
    try:
        assert cat.setup() == {"template": "videos", "alias": "videos", "created_index": "videos-000001"}
        cat.upsert([make_doc("dog", "A dog", vector=unit(1, 0)), make_doc("cat", "A cat")])
        assert cat.get(vid("nothing")) is None
        result = cat.search(SearchQuery("dog", tags=["pets"]))
    finally:
        cat.close()
        server.shutdown()
        server.server_close()
    calls = RecordingStandIn.calls
    assert [(m, p) for m, p, _ in calls[:3]] == [
        ("PUT", "/_index_template/videos"), ("HEAD", "/_alias/videos"), ("PUT", "/videos-000001")]
    template = json.loads(calls[0][2])
    assert template["index_patterns"] == ["videos-*"] and "mappings" in template["template"]
    assert json.loads(calls[2][2])["aliases"] == {"videos": {"is_write_index": True}}
    bulk = [json.loads(x) for x in next(b for m, p, b in calls if p == "/_bulk").splitlines()]
    assert [a["index"] for a in bulk[0::2]] == [{"_index": "videos", "_id": vid("dog")},
                                                {"_index": "videos", "_id": vid("cat")}]
    assert bulk[1]["vector"] == unit(1, 0) and bulk[1]["doc"]["title"] == "A dog"
    search = json.loads(next(b for m, p, b in calls if p == "/videos/_search"))
    assert {"term": {"tags": "pets"}} in search["query"]["bool"]["filter"] and "knn" not in search
    assert result.total == 0 and result.backend == "elasticsearch"


def test_catalogue_sends_minilm_text_vectors_and_a_hybrid_query():
    RecordingStandIn.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cat = ElasticCatalogue(f"http://127.0.0.1:{server.server_address[1]}", index="videos", text_vectors=True)
    try:
        cat.upsert([make_doc("dog", "A dog running on the beach"), make_doc("blank", None)])
        cat.search(SearchQuery("puppy at the seaside"))
    finally:
        cat.close()
        server.shutdown()
        server.server_close()
    bulk = [json.loads(x) for x in next(b for m, p, b in RecordingStandIn.calls if p == "/_bulk").splitlines()]
    dog, blank = bulk[1], bulk[3]
    assert len(dog["text_vector"]) == 384 and dog["text_model"] == "all-MiniLM-L6-v2"
    assert "text_vector" not in blank  # nothing to embed
    search = json.loads(next(b for m, p, b in RecordingStandIn.calls if p == "/videos/_search"))
    qv = search["knn"]["query_vector"]
    assert len(qv) == 384 and sum(a * b for a, b in zip(qv, dog["text_vector"])) > 0.4


def test_es_setup_command_puts_template_alias_and_imports_kibana_objects(monkeypatch, capsys):
    import argparse

    import settings
    from processing.search_cli import register

    RecordingStandIn.calls, KibanaStandIn.received = [], []
    es, es_url = serve(RecordingStandIn)
    kibana, kibana_url = serve(KibanaStandIn)
    monkeypatch.setattr(settings, "ELASTICSEARCH_URL", es_url)
    monkeypatch.setattr(settings, "KIBANA_URL", kibana_url)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["es-setup"])
    try:
        assert args.func(args) == 0
    finally:
        for server in (es, kibana):
            server.shutdown()
            server.server_close()
    out = capsys.readouterr().out
    assert "index template 'videos' and alias 'videos' ready; created videos-000001" in out
    assert f"videopipe.ndjson ({len(kibana_objects())} objects)" in out
    assert ("PUT", "/_index_template/videos") in [(m, p) for m, p, _ in RecordingStandIn.calls]
    assert KibanaStandIn.received[0][0] == "/api/saved_objects/_import?overwrite=true"
