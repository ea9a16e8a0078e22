"""ElasticCatalogue: the catalogue and its search on Elasticsearch (index template, alias, bulk).

Documents are written through an alias (``ELASTICSEARCH_INDEX``, default ``videos``) that points
at a concrete index ``<alias>-<n>`` made from an index template with explicit mappings, so the
index can be rebuilt (``rebuild()``) and the alias swapped atomically. Writes are bulk requests
(``elasticsearch.helpers.streaming_bulk``) keyed by ``_id = video_id`` (idempotent), retried
with exponential back-off on 429 and 5xx. Search takes the same ``SearchQuery`` as the embedded
engine: BM25 over the text fields, blended with a kNN over the MiniLM text embedding, filters,
facet aggregations and paging; ``similar`` is a kNN over the video descriptor of the same model.

The elasticsearch 9.x client asks for 9.x responses (``compatible-with=9``); Elasticsearch 8
and older refuse them. ``setup()`` reads the server's version first: a refusal raises
``ServerVersionError`` saying Elasticsearch 9 is needed, and a server that reports an older
version yet answers (an ES-API emulator such as noida-db does) gets a warning.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError, helpers
from elasticsearch import __versionstr__ as CLIENT_VERSION

from processing.catalogue.base import Catalogue, Document, SearchHit, SearchQuery, SearchResult
from processing.catalogue.config import CatalogueConfig
from crawler.licenses import ids_matching
from crawler.takedowns import place_key
from processing.catalogue.documents import (
    doc_domains,
    doc_license_id,
    doc_places,
    doc_tags,
    embedding_text,
    label_text,
    public_doc,
)
from processing.catalogue.textembed import TextEmbedder

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
TEXT_FIELDS = {"title": 3.0, "description": 1.0, "caption": 1.5, "ocr_text": 1.0, "transcript": 1.0, "tags.text": 2.0}
DATE_FIELDS = ("fetched_at", "processed_at", "indexed_at")
NEWEST_FIRST = [{"indexed_at": {"order": "desc", "unmapped_type": "date"}}, {"video_id": "asc"}]
NO_VECTORS = {"excludes": ["vector", "text_vector"]}


def _text_with_keyword(analyzer: str = "standard") -> dict:
    return {"type": "text", "analyzer": analyzer, "fields": {"keyword": {"type": "keyword", "ignore_above": 512}}}


def index_template(alias: str, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """The composable index template body for ``<alias>-*`` with explicit mappings."""
    keyword = {"type": "keyword"}
    properties: dict[str, Any] = {
        "video_id": keyword, "url": keyword, "page_url": keyword, "source": keyword,
        "title": _text_with_keyword("english"), "description": _text_with_keyword("english"),
        "caption": _text_with_keyword("english"), "ocr_text": _text_with_keyword(),
        "transcript": _text_with_keyword("english"),
        "tags": {"type": "keyword", "fields": {"text": {"type": "text", "analyzer": "english"}}},
        "license": keyword, "license_id": keyword, "uploader": keyword,
        "extractor": keyword, "platform_id": keyword,
        "places": keyword, "domains": keyword,  # every URL/path (takedowns.place_key) and host: for `forget`
        "status": keyword, "duplicate_of": keyword, "similarity": {"type": "float"},
        "is_canonical": {"type": "boolean"}, "duplicate_count": {"type": "integer"},
        "container": keyword, "video_codec": keyword, "audio_codec": keyword,
        "duration": {"type": "float"}, "width": {"type": "integer"}, "height": {"type": "integer"},
        "resolution": keyword, "fps": {"type": "float"}, "size_bytes": {"type": "long"},
        "bit_rate": {"type": "long"}, "view_count": {"type": "long"},
        "fetched_at": {"type": "date"}, "processed_at": {"type": "date"}, "indexed_at": {"type": "date"},
        "published": keyword,
        "error_stages": keyword, "errors": {"type": "flattened"},
        "path": {"type": "keyword", "index": False}, "thumbnail_path": {"type": "keyword", "index": False},
        "phash": keyword, "sha256": keyword,
        "embedding_model": keyword, "text_model": keyword,
        "vector": {"type": "dense_vector", "index": True, "similarity": "cosine"},
        "text_vector": {"type": "dense_vector", "index": True, "similarity": "cosine"},
        "labels": {"type": "object", "enabled": False},
        "doc": {"type": "object", "enabled": False},  # the catalogue document as written
    }  # fmt: skip
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 200,
        "_meta": {"description": "videopipe catalogue", "managed_by": "python -m processing es-setup"},
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
            "mappings": {"dynamic": False, "properties": properties},
        },
    }


def _date(value) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None


def to_es_doc(doc: Mapping[str, Any], text_vector=None, text_model: str | None = None) -> dict[str, Any]:
    """The Elasticsearch source of a catalogue document (searchable fields + the document)."""
    width, height = doc.get("width"), doc.get("height")
    out: dict[str, Any] = {
        k: doc.get(k)
        for k in (
            "video_id", "url", "page_url", "source", "title", "description", "license", "uploader",
            "extractor", "platform_id", "status", "duplicate_of", "similarity", "container",
            "video_codec", "audio_codec", "duration", "width", "height", "fps", "size_bytes",
            "bit_rate", "view_count", "published", "path", "thumbnail_path", "phash", "sha256",
        )
    }  # fmt: skip
    out["status"] = out["status"] or "indexed"
    out["license"] = doc["license"].strip().lower() if isinstance(doc.get("license"), str) else None
    out["license_id"] = doc_license_id(doc)
    out["places"] = [k for k in dict.fromkeys(place_key(p) for p in doc_places(doc)) if k]
    out["domains"] = doc_domains(doc)
    out["caption"] = label_text(doc, "caption")
    out["ocr_text"] = label_text(doc, "ocr")
    out["transcript"] = label_text(doc, "transcript")
    out["tags"] = doc_tags(doc)
    out["resolution"] = f"{width}x{height}" if width and height else None
    out["is_canonical"] = out["status"] == "indexed"
    for name in ("fetched_at", "processed_at"):
        out[name] = _date(doc.get(name))
    out["indexed_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    errors = doc.get("errors") if isinstance(doc.get("errors"), dict) else {}
    out["errors"] = {k: str(v)[:1000] for k, v in errors.items()}
    out["error_stages"] = sorted(errors)
    out["labels"] = doc.get("labels") or {}
    vec = doc.get("vector")
    if isinstance(vec, (list, tuple)) and vec:
        out["vector"] = [float(x) for x in vec]
        out["embedding_model"] = doc.get("embedding_model")
    if text_vector is not None:
        out["text_vector"] = [float(x) for x in text_vector]
        out["text_model"] = text_model
    out["doc"] = public_doc(doc)
    return {k: v for k, v in out.items() if v is not None}


def _filters(q: SearchQuery) -> list[dict]:
    f: list[dict] = []
    if q.status:
        f.append({"term": {"status": q.status}})
    if q.source:
        f.append({"term": {"source": q.source}})
    if q.license:  # an id, a family (cc-by: CC-BY-* only) or "open": crawler.licenses.matches
        f.append({"terms": {"license_id": ids_matching(q.license)}})
    for tag in q.tags:
        f.append({"term": {"tags": tag}})
    duration = {k: v for k, v in (("gte", q.min_duration), ("lte", q.max_duration)) if v is not None}
    if duration:
        f.append({"range": {"duration": duration}})
    if q.min_width is not None:
        f.append({"range": {"width": {"gte": q.min_width}}})
    if q.min_height is not None:
        f.append({"range": {"height": {"gte": q.min_height}}})
    return f


def _aggs(size: int) -> dict:
    return {
        "tags": {"terms": {"field": "tags", "size": size}},
        "sources": {"terms": {"field": "source", "size": size}},
        "licenses": {"terms": {"field": "license_id", "size": size}},
    }


def _knn(field: str, vector, k: int, filters) -> dict[str, Any]:
    return {"field": field, "query_vector": [float(x) for x in vector], "k": k,
            "num_candidates": min(max(2 * k, 100), 10_000), "filter": filters}  # fmt: skip


def search_body(q: SearchQuery, cfg: CatalogueConfig, query_vector=None) -> dict[str, Any]:
    """The _search request for ``q``: BM25 (weight ``cfg.bm25_weight``) + kNN on text_vector (the rest)."""
    alpha = cfg.bm25_weight
    filters = _filters(q)
    body: dict[str, Any] = {
        "from": q.offset,
        "size": q.per_page,
        "track_total_hits": True,
        "_source": NO_VECTORS,
        "aggs": _aggs(cfg.facet_size),
    }
    if q.text:
        body["query"] = {
            "bool": {
                "must": [{
                    "multi_match": {
                        "query": q.text, "type": "best_fields", "operator": "or",
                        "fields": [f"{k}^{w:g}" for k, w in TEXT_FIELDS.items()],
                        "boost": alpha if query_vector is not None else 1.0,
                    }
                }],
                "filter": filters,
            }
        }  # fmt: skip
        if query_vector is not None:
            k = max(cfg.semantic_k, q.offset + q.per_page)
            body["knn"] = {**_knn("text_vector", query_vector, k, filters),
                           "similarity": cfg.semantic_min, "boost": 1.0 - alpha}  # fmt: skip
    else:
        body["query"] = {"bool": {"filter": filters}}
        body["sort"] = NEWEST_FIRST
    return body


def similar_body(vector, model: str | None, video_id: str, q: SearchQuery, facet_size: int) -> dict[str, Any]:
    """A kNN over the video descriptors of the same model, excluding the video itself."""
    filters = _filters(q) + [{"term": {"embedding_model": model}}] if model else _filters(q)
    exclude_self = {"bool": {"filter": filters, "must_not": [{"ids": {"values": [video_id]}}]}}
    return {
        "from": q.offset,
        "size": q.per_page,
        "_source": NO_VECTORS,
        "knn": _knn("vector", vector, q.offset + q.per_page, exclude_self),
        "aggs": _aggs(facet_size),
    }


def parse_response(q: SearchQuery, resp: Mapping[str, Any], similar_to: str | None = None) -> SearchResult:
    hits = []
    for h in resp.get("hits", {}).get("hits", []):
        src = h.get("_source", {})
        doc = src.get("doc") or {k: v for k, v in src.items() if k != "doc"}
        hits.append(SearchHit(h["_id"], float(h.get("_score") or 0.0), doc))
    total = resp.get("hits", {}).get("total", 0)
    total = total.get("value", 0) if isinstance(total, dict) else int(total or 0)
    facets = {
        name: [(b["key"], b["doc_count"]) for b in agg.get("buckets", [])]
        for name, agg in (resp.get("aggregations") or {}).items()
    }
    return SearchResult(q, total, hits, facets, similar_to=similar_to, backend="elasticsearch")


# --- bulk writes with retries ------------------------------------------------------------------
class BulkError(RuntimeError):
    """Some documents could not be written (after retries, or rejected by the mapping)."""

    def __init__(self, failures: dict[str, str]):
        super().__init__(f"{len(failures)} document(s) not written: " + "; ".join(
            f"{k[:12]}: {v}" for k, v in list(failures.items())[:5]))  # fmt: skip
        self.failures = failures


def bulk_write(
    client,
    actions: list[dict],
    *,
    max_retries: int,
    backoff: float,
    chunk_size: int,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Send ``actions`` (each with ``_id``) in bulk; retry 429/5xx items and failed requests.

    Returns counts {"written", "retries"}; raises ``BulkError`` naming the documents that were
    rejected (4xx other than 429) or still failing after ``max_retries`` back-offs.
    """
    pending = {a["_id"]: a for a in actions}
    failures: dict[str, str] = {}
    written = retries = 0
    for attempt in range(max_retries + 1):
        retry: dict[str, dict] = {}
        try:
            for ok, info in helpers.streaming_bulk(
                client, list(pending.values()), chunk_size=chunk_size, max_retries=0,
                raise_on_error=False, raise_on_exception=False,
            ):  # fmt: skip
                op = next(iter(info.values()))
                _id = op.get("_id")
                if ok:
                    written += 1
                    continue
                status = op.get("status")
                if status in RETRY_STATUS and _id in pending:
                    retry[_id] = pending[_id]
                    failures[_id] = f"http_{status}"
                else:
                    failures[_id] = f"rejected_{status}: {json.dumps(op.get('error'))[:300]}"
        except (TransportConnectionError, ConnectionTimeout) as exc:  # the whole request failed
            retry = pending
            failures.update({k: f"connection_error: {exc}" for k in pending})
        for _id in pending:
            if _id not in retry and failures.get(_id, "").startswith(("http_", "connection_error")):
                failures.pop(_id, None)
        if not retry:
            break
        if attempt < max_retries:
            retries += 1
            delay = backoff * (2**attempt)
            log.warning("elasticsearch bulk: retrying %d document(s) in %.1f s", len(retry), delay)
            sleep(delay)
        pending = retry
    if failures:
        raise BulkError(failures)
    return {"written": written, "retries": retries}


# --- the server ---------------------------------------------------------------------------------
SERVER_MAJOR = int(CLIENT_VERSION.split(".")[0])  # the client speaks to servers of its own major


class ServerVersionError(RuntimeError):
    """The server refused this client's requests: it is older than the client's major version."""


def check_server(client, url: str) -> tuple[str, str | None]:
    """The server's version number, and a warning when it reports an older major than the client."""
    parts = urlsplit(url)
    url = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")  # no credentials
    try:
        info = client.info()
    except BadRequestError as exc:
        if "media_type_header" not in str(exc.message):
            raise
        raise ServerVersionError(
            f"{url} refused the elasticsearch {CLIENT_VERSION} client's requests ({exc.message}): "
            f"this project needs Elasticsearch {SERVER_MAJOR}.x; Elasticsearch {SERVER_MAJOR - 1} and older "
            f"refuse the {SERVER_MAJOR}.x client"
        ) from exc
    number = str(info["version"]["number"])
    if int(number.split(".")[0]) >= SERVER_MAJOR:
        return number, None
    return number, (
        f"{url} reports Elasticsearch {number}, older than the elasticsearch {CLIENT_VERSION} client "
        f"(made for Elasticsearch {SERVER_MAJOR}; a real {number.split('.')[0]}.x cluster refuses its requests). "
        f"This server answered them, as an ES-API emulator does, so set-up goes on: "
        f"use Elasticsearch {SERVER_MAJOR} in production"
    )


# --- the backend --------------------------------------------------------------------------------
def make_client(cfg: CatalogueConfig, **kwargs) -> Elasticsearch:
    """An Elasticsearch client for ``cfg.url`` (API key or basic auth, CA certificates)."""
    if not cfg.url:
        raise ValueError("ELASTICSEARCH_URL is not set")
    opts: dict[str, Any] = {"request_timeout": 30, "retry_on_timeout": True, "max_retries": 2}
    if cfg.api_key:
        opts["api_key"] = cfg.api_key
    elif cfg.username:
        opts["basic_auth"] = (cfg.username, cfg.password)
    if cfg.ca_certs:
        opts["ca_certs"] = cfg.ca_certs
    opts.update(kwargs)
    return Elasticsearch(cfg.url, **opts)


class ElasticCatalogue(Catalogue):
    """The catalogue on Elasticsearch; every write and read goes through the alias.

    ``url`` and ``index`` override the configuration's; ``refresh_each`` makes every upsert
    refresh the index (tests); otherwise ``refresh()`` makes the writes so far searchable.
    """

    def __init__(self, url: str | None = None, index: str | None = None, *, config: CatalogueConfig | None = None,
                 client=None, embedder=None, text_vectors: bool | None = None, refresh_each: bool = False):  # fmt: skip
        cfg = config or CatalogueConfig.from_settings()
        self.config = replace(cfg, **{k: v for k, v in (("url", url), ("index", index)) if v is not None})
        self.alias = self.config.index
        self.client = client if client is not None else make_client(self.config)
        self.text_vectors = self.config.semantic if text_vectors is None else text_vectors
        self._embedder = embedder
        self.refresh_each = refresh_each
        self.server_version: str | None = None
        self._ready = False

    @classmethod
    def from_config(cls, config: CatalogueConfig) -> ElasticCatalogue:
        return cls(config=config)

    @property
    def embedder(self) -> TextEmbedder | None:
        if self._embedder is None and self.text_vectors:
            self._embedder = TextEmbedder.shared(self.config.text_model, self.config.device)
        return self._embedder

    # -- set-up --
    def setup(self) -> dict[str, Any]:
        """Check the server, put the index template, create the first index behind the alias (idempotent).

        Raises ``ServerVersionError`` when the server refuses this client (Elasticsearch < 9).
        """
        self.server_version, warning = check_server(self.client, self.config.url)
        self.client.indices.put_index_template(name=self.alias, body=index_template(self.alias))
        created = None
        if not self.client.indices.exists_alias(name=self.alias):
            created = f"{self.alias}-000001"
            self.client.indices.create(index=created, aliases={self.alias: {"is_write_index": True}})
        self._ready = True
        return {"template": self.alias, "alias": self.alias, "created_index": created,
                "server_version": self.server_version, "warning": warning}  # fmt: skip

    def indices(self) -> list[str]:
        """The concrete indices behind the alias."""
        return sorted(self.client.indices.get_alias(name=self.alias))

    def rebuild(self) -> dict[str, Any]:
        """Reindex into a fresh index from the current template, swap the alias, delete the old index.

        Documents written to the old index while the copy ran are copied after the swap (those
        not yet in the new index), then the old index is deleted by name: a rebuild leaves one
        index behind the alias and none without it.
        """
        self.setup()
        old = ",".join(self.indices())
        new = f"{self.alias}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
        self.client.indices.create(index=new)
        self.refresh()  # reindex copies what a search sees
        self.client.reindex(source={"index": old}, dest={"index": new}, wait_for_completion=True, refresh=True)
        actions = [{"remove": {"index": i, "alias": self.alias}} for i in old.split(",")]
        actions.append({"add": {"index": new, "alias": self.alias, "is_write_index": True}})
        self.client.indices.update_aliases(actions=actions)
        self.client.indices.refresh(index=old)
        self.client.reindex(source={"index": old}, dest={"index": new, "op_type": "create"},
                            conflicts="proceed", wait_for_completion=True, refresh=True)  # fmt: skip
        self.client.indices.delete(index=old)
        return {"index": new, "deleted": old.split(",")}

    def delete(self) -> list[str]:
        """Delete every index behind the alias and the index template, by name; returns the indices."""
        gone = self.indices() if self.client.indices.exists_alias(name=self.alias) else []
        if gone:
            self.client.indices.delete(index=",".join(gone))
        self.client.options(ignore_status=404).indices.delete_index_template(name=self.alias)
        self._ready = False
        return gone

    def _ensure(self):
        if not self._ready and (warning := self.setup()["warning"]):
            log.warning("%s", warning)

    # -- the four catalogue methods --
    def upsert(self, docs: Iterable[Document]) -> None:
        docs = [d for d in docs if d.get("video_id")]
        if not docs:
            return
        self._ensure()
        vectors = [None] * len(docs)
        embedder = self.embedder
        if embedder is not None:
            texts = [embedding_text(d) for d in docs]
            idx = [i for i, t in enumerate(texts) if t]
            if idx:
                for i, vec in zip(idx, embedder.encode([texts[i] for i in idx])):
                    vectors[i] = vec
        actions = [
            {"_op_type": "index", "_index": self.alias, "_id": d["video_id"],
             "_source": to_es_doc(d, v, embedder.name if embedder is not None and v is not None else None)}
            for d, v in zip(docs, vectors)
        ]  # fmt: skip
        cfg = self.config
        bulk_write(self.client, actions, max_retries=cfg.max_retries, backoff=cfg.backoff, chunk_size=cfg.bulk_chunk)
        if self.refresh_each:
            self.refresh()

    def refresh(self) -> None:
        """Make every write so far visible to searches and counts (an index refresh)."""
        self.client.indices.refresh(index=self.alias)

    def get(self, video_id: str) -> Document | None:
        try:
            resp = self.client.get(index=self.alias, id=video_id)
        except NotFoundError:
            return None
        return self._doc(resp["_source"])

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Document]:
        self._ensure()
        query = {"term": {"status": status}} if status else {"match_all": {}}
        resp = self.client.search(index=self.alias, query=query, from_=offset, size=limit,
                                  source_excludes=["text_vector"], sort=NEWEST_FIRST)  # fmt: skip
        return [self._doc(h["_source"]) for h in resp["hits"]["hits"]]

    def counts(self) -> dict[str, int]:
        self._ensure()
        resp = self.client.search(index=self.alias, size=0, aggs={"s": {"terms": {"field": "status", "size": 50}}})
        return {b["key"]: b["doc_count"] for b in resp["aggregations"]["s"]["buckets"]}

    @staticmethod
    def _doc(src: Mapping[str, Any]) -> Document:
        doc = dict(src.get("doc") or {})
        if "vector" in src:
            doc["vector"] = src["vector"]
        return doc

    # -- reading for people --
    def iter_all(self, status: str | None = None, batch: int = 500) -> Iterator[Document]:
        query = {"query": {"term": {"status": status}}} if status else {"query": {"match_all": {}}}
        for hit in helpers.scan(self.client, index=self.alias, query=query, size=batch, source_excludes=["text_vector"]):
            yield self._doc(hit["_source"])

    def duplicates_of(self, canonical_id: str) -> list[Document]:
        resp = self.client.search(
            index=self.alias, size=1000, source_excludes=["vector", "text_vector"],
            query={"bool": {"filter": [{"term": {"duplicate_of": canonical_id}}],
                            "must_not": [{"ids": {"values": [canonical_id]}}]}},
            sort=[{"similarity": {"order": "desc", "unmapped_type": "float"}}, {"video_id": "asc"}],
        )  # fmt: skip
        return [self._doc(h["_source"]) for h in resp["hits"]["hits"]]

    def remove(self, video_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(video_ids))
        if not ids:
            return 0
        self._ensure()
        gone = 0
        for ok, info in helpers.streaming_bulk(
            self.client, [{"_op_type": "delete", "_index": self.alias, "_id": i} for i in ids],
            chunk_size=self.config.bulk_chunk, raise_on_error=False, raise_on_exception=False,
        ):  # fmt: skip
            op = next(iter(info.values()))
            if ok and op.get("result") != "not_found":
                gone += 1
            elif op.get("status") not in (404, None):
                raise BulkError({op.get("_id", "?"): f"delete failed: {op.get('status')}"})
        self.refresh()
        return gone

    def resolve_id(self, prefix: str, limit: int = 10) -> list[str]:
        prefix = (prefix or "").strip().lower()
        if not prefix:
            return []
        self._ensure()
        resp = self.client.search(index=self.alias, query={"prefix": {"video_id": prefix}}, size=limit,
                                  source=False, sort=[{"video_id": "asc"}])  # fmt: skip
        return [h["_id"] for h in resp["hits"]["hits"]]

    def find_places(self, urls: Iterable[str] = (), domain: str | None = None) -> list[Document]:
        should: list[dict] = []
        keys = [k for k in dict.fromkeys(place_key(u) for u in urls) if k]
        if keys:
            should.append({"terms": {"places": keys}})
        if domain:
            should.append({"term": {"domains": domain}})
        if not should:
            return []
        self._ensure()
        query = {"query": {"bool": {"should": should, "minimum_should_match": 1}}}
        return [self._doc(h["_source"]) for h in helpers.scan(self.client, index=self.alias, query=query,
                                                              source_excludes=["text_vector"])]  # fmt: skip

    def _search(self, body: dict[str, Any]) -> Mapping[str, Any]:
        resp = self.client.search(index=self.alias, **body)
        return resp.body if hasattr(resp, "body") else resp

    def search(self, query: SearchQuery) -> SearchResult:
        self._ensure()
        qvec = None
        if query.text and query.semantic and self.embedder is not None:
            qvec = self.embedder.encode([query.text])[0]
        return parse_response(query, self._search(search_body(query, self.config, qvec)))

    def similar(self, video_id: str, query: SearchQuery | None = None) -> SearchResult:
        query = query or SearchQuery()
        doc = self.get(video_id)
        if not doc or not doc.get("vector"):
            return SearchResult(query, 0, [], {}, similar_to=video_id, backend="elasticsearch")
        body = similar_body(doc["vector"], doc.get("embedding_model"), video_id, query, self.config.facet_size)
        return parse_response(query, self._search(body), similar_to=video_id)

    def close(self) -> None:
        self.client.close()
