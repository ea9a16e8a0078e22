"""The catalogue: where finished documents land, behind one interface, two backends.

``open_catalogue()`` returns the Elasticsearch backend when ``ELASTICSEARCH_URL`` is set and
the embedded SQLite one otherwise. Workers only ``upsert``; the CLI and the search page
read. Writes are idempotent by ``video_id``: writing a document again replaces it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import settings

if TYPE_CHECKING:
    from processing.search import SearchQuery, SearchResult

# A document is VideoItem.to_dict() plus, optionally:
#   "vector": the video descriptor (list of floats, L2-normalised) of `embedding_model`.
Document = dict[str, Any]


class Catalogue(ABC):
    """The store of finished documents. Implementations must be safe to reopen at any time."""

    @abstractmethod
    def upsert(self, docs: Iterable[Document]) -> None:
        """Insert or replace documents by ``video_id``; durable when this returns."""

    @abstractmethod
    def get(self, video_id: str) -> Document | None:
        """One document by id, or None."""

    @abstractmethod
    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Document]:
        """Documents, newest first, optionally only those in ``status``."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Number of documents per status."""

    # -- reading for people: the same query features on every backend (processing/search.py) --
    def search(self, query: "SearchQuery") -> "SearchResult":
        """Full-text + semantic search with filters, facets and paging."""
        raise NotImplementedError(f"{type(self).__name__} does not search")

    def similar(self, video_id: str, query: "SearchQuery | None" = None) -> "SearchResult":
        """Kept videos nearest to ``video_id`` by video descriptor (same embedding model)."""
        raise NotImplementedError(f"{type(self).__name__} does not search")

    def duplicates(self, video_id: str) -> dict[str, Any] | None:
        """The duplicate cluster of a video: its canonical and every copy, with similarity."""
        canonical_id = video_id
        doc = self.get(video_id)
        if doc is None:
            return None
        if doc.get("status") == "duplicate" and doc.get("duplicate_of"):
            canonical_id = doc["duplicate_of"]
        return {
            "video_id": video_id,
            "canonical": self.get(canonical_id) or {"video_id": canonical_id, "missing": True},
            "duplicates": self.duplicates_of(canonical_id),
        }

    def duplicates_of(self, canonical_id: str) -> list[Document]:
        """Documents recorded as duplicates of ``canonical_id``, most similar first."""
        raise NotImplementedError(f"{type(self).__name__} does not list duplicates")

    def iter_all(self, status: str | None = None, batch: int = 500) -> Iterator[Document]:
        """Every document (optionally of one status), in a stable order, for exports."""
        offset = 0
        while True:
            docs = self.list(status=status, limit=batch, offset=offset)
            yield from docs
            if len(docs) < batch:
                return
            offset += batch

    def close(self) -> None:
        """Release connections (optional)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SqliteCatalogue(Catalogue):
    """The embedded default: one SQLite file under the data dir (WAL, safe across processes)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or settings.CATALOGUE_PATH)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS videos (
                video_id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                url TEXT,
                source TEXT,
                duplicate_of TEXT,
                updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                doc TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS videos_status ON videos(status);
            CREATE INDEX IF NOT EXISTS videos_duplicate_of ON videos(duplicate_of);
            """
        )
        self._searcher = None
        from processing import search as _search  # the search side tables live with the rows

        _search.ensure_schema(self.db)
        with self._lock:
            _search.backfill(self.db)

    def upsert(self, docs: Iterable[Document]) -> None:
        docs = list(docs)
        rows = [
            (d["video_id"], d.get("status") or "indexed", d.get("url"), d.get("source"),
             d.get("duplicate_of"), json.dumps(d, ensure_ascii=False))
            for d in docs
        ]  # fmt: skip
        if not rows:
            return
        from processing import search as _search

        with self._lock, self.db:
            self.db.executemany(
                "INSERT INTO videos (video_id, status, url, source, duplicate_of, doc) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(video_id) DO UPDATE SET "
                "status=excluded.status, url=excluded.url, source=excluded.source, "
                "duplicate_of=excluded.duplicate_of, doc=excluded.doc, "
                "updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                rows,
            )
            _search.index_rows(self.db, docs)

    def get(self, video_id: str) -> Document | None:
        with self._lock:
            row = self.db.execute("SELECT doc FROM videos WHERE video_id=?", (video_id,)).fetchone()
        return json.loads(row["doc"]) if row else None

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Document]:
        sql, args = "SELECT doc FROM videos", []
        if status:
            sql, args = sql + " WHERE status=?", [status]
        sql += " ORDER BY updated_at DESC, video_id LIMIT ? OFFSET ?"
        with self._lock:
            rows = self.db.execute(sql, [*args, limit, offset]).fetchall()
        return [json.loads(r["doc"]) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self.db.execute("SELECT status, COUNT(*) AS n FROM videos GROUP BY status")
            return {r["status"]: r["n"] for r in rows}

    def iter_all(self, status: str | None = None, batch: int = 500) -> Iterator[Document]:
        sql, args = "SELECT rowid, doc FROM videos WHERE rowid > ?", []
        if status:
            sql, args = sql + " AND status=?", [status]
        last = 0
        while True:
            with self._lock:
                rows = self.db.execute(sql + " ORDER BY rowid LIMIT ?", [last, *args, batch]).fetchall()
            for r in rows:
                yield json.loads(r["doc"])
            if len(rows) < batch:
                return
            last = rows[-1]["rowid"]

    def duplicates_of(self, canonical_id: str) -> list[Document]:
        with self._lock:
            rows = self.db.execute(
                "SELECT doc FROM videos WHERE duplicate_of=? AND video_id<>?", (canonical_id, canonical_id)
            ).fetchall()
        docs = [json.loads(r["doc"]) for r in rows]
        return sorted(docs, key=lambda d: (-(d.get("similarity") or 0.0), d["video_id"]))

    @property
    def searcher(self):
        """The embedded search engine over this file (FTS5 + faiss), built on first use."""
        if self._searcher is None:
            from processing.search import EmbeddedSearch

            self._searcher = EmbeddedSearch(self)
        return self._searcher

    def search(self, query):
        return self.searcher.search(query)

    def similar(self, video_id, query=None):
        return self.searcher.similar(video_id, query)

    def close(self) -> None:
        self.db.close()


def open_catalogue() -> Catalogue:
    """The configured backend: Elasticsearch when ELASTICSEARCH_URL is set, else SQLite."""
    if settings.ELASTICSEARCH_URL:
        from processing.elastic import ElasticCatalogue  # the catalogue issue adds it

        return ElasticCatalogue(settings.ELASTICSEARCH_URL)
    return SqliteCatalogue()
