"""The embedded catalogue: one SQLite file (WAL) with FTS5 for text and faiss for vectors.

``SqliteCatalogue`` stores each document as JSON in ``videos`` and, in the same transaction,
writes the search side tables (``index_rows``): facts to filter on, tags, an FTS5 table over
the searchable text, and the video descriptors. ``EmbeddedSearch`` answers ``SearchQuery``
over them. Text embeddings (MiniLM) are computed lazily by the searching process and stored
back, so workers never load a text model. Ranking blends BM25 (normalised to the best hit)
with the cosine similarity of MiniLM text embeddings; ``similar`` ranks by descriptor cosine,
only among videos whose descriptor comes from the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from processing.catalogue.base import Catalogue, Document, SearchHit, SearchQuery, SearchResult
from processing.catalogue.config import CatalogueConfig
from crawler.licenses import ids_matching
from processing.catalogue.documents import doc_license_id, doc_tags, embedding_text, public_doc, searchable_text
from processing.catalogue.textembed import ClipTextEncoder, TextEmbedder

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is not news

FTS_COLUMNS = ("title", "description", "caption", "ocr", "transcript", "tags")
# bm25() weights, in FTS_COLUMNS order (the leading video_id column is unindexed: weight 0).
BM25_WEIGHTS = (0.0, 3.0, 1.0, 1.5, 1.0, 1.0, 2.0)
# Words too common to make a text match on their own (FTS5 has no stop-word list).
STOPWORDS = frozenset(
    "a an and are as at be by for from has in is it its of on or that the this to was were with"
    " video videos clip".split()
)

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS search_facts (
    video_id TEXT PRIMARY KEY, status TEXT, source TEXT, license TEXT, duration REAL,
    width INTEGER, height INTEGER, embedding_model TEXT, text_hash TEXT, license_id TEXT
);
CREATE INDEX IF NOT EXISTS search_facts_status ON search_facts(status);
CREATE TABLE IF NOT EXISTS search_tags (video_id TEXT, tag TEXT, PRIMARY KEY (video_id, tag));
CREATE INDEX IF NOT EXISTS search_tags_tag ON search_tags(tag);
CREATE TABLE IF NOT EXISTS search_vectors (video_id TEXT PRIMARY KEY, model TEXT, dim INTEGER, vec BLOB);
CREATE TABLE IF NOT EXISTS search_text_vectors (
    video_id TEXT PRIMARY KEY, model TEXT, text_hash TEXT, vec BLOB
);
CREATE TABLE IF NOT EXISTS search_state (key TEXT PRIMARY KEY, value INTEGER);
CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(
    video_id UNINDEXED, title, description, caption, ocr, transcript, tags,
    tokenize = 'porter unicode61 remove_diacritics 2'
);
"""
BUMP_VERSION = "INSERT INTO search_state VALUES ('version', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1"


class SqliteCatalogue(Catalogue):
    """The embedded default: one SQLite file under the data dir (WAL, safe across processes).

    ``lock`` serialises this process's use of the one connection (the catalogue's writes and
    the search engine's reads).
    """

    def __init__(self, path: str | Path | None = None, config: CatalogueConfig | None = None):
        self.config = config or CatalogueConfig.from_settings()
        self.path = Path(path or self.config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        with self.lock:
            migrate(self.db)
            backfill(self.db)
        self._searcher: EmbeddedSearch | None = None

    @classmethod
    def from_config(cls, config: CatalogueConfig) -> SqliteCatalogue:
        """The file ``config.url`` names (a path), else ``config.path``."""
        return cls(config.url or config.path, config)

    def upsert(self, docs: Iterable[Document]) -> None:
        docs = list(docs)
        rows = [
            (d["video_id"], d.get("status") or "indexed", d.get("url"), d.get("source"),
             d.get("duplicate_of"), json.dumps(d, ensure_ascii=False))
            for d in docs
        ]  # fmt: skip
        if not rows:
            return
        with self.lock, self.db:
            self.db.executemany(
                "INSERT INTO videos (video_id, status, url, source, duplicate_of, doc) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(video_id) DO UPDATE SET "
                "status=excluded.status, url=excluded.url, source=excluded.source, "
                "duplicate_of=excluded.duplicate_of, doc=excluded.doc, "
                "updated_at=strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                rows,
            )
            index_rows(self.db, docs)

    def _docs(self, sql: str, args: Iterable[Any] = ()) -> list[Document]:
        with self.lock:
            rows = self.db.execute(sql, list(args)).fetchall()
        return [json.loads(r["doc"]) for r in rows]

    def get(self, video_id: str) -> Document | None:
        docs = self._docs("SELECT doc FROM videos WHERE video_id=?", [video_id])
        return docs[0] if docs else None

    def list(self, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Document]:
        sql, args = "SELECT doc FROM videos", []
        if status:
            sql, args = sql + " WHERE status=?", [status]
        return self._docs(sql + " ORDER BY updated_at DESC, video_id LIMIT ? OFFSET ?", [*args, limit, offset])

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT status, COUNT(*) AS n FROM videos GROUP BY status")
            return {r["status"]: r["n"] for r in rows}

    def iter_all(self, status: str | None = None, batch: int = 500) -> Iterator[Document]:
        sql, args = "SELECT rowid, doc FROM videos WHERE rowid > ?", []
        if status:
            sql, args = sql + " AND status=?", [status]
        last = 0
        while True:
            with self.lock:
                rows = self.db.execute(sql + " ORDER BY rowid LIMIT ?", [last, *args, batch]).fetchall()
            for r in rows:
                yield json.loads(r["doc"])
            if len(rows) < batch:
                return
            last = rows[-1]["rowid"]

    def remove(self, video_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(video_ids))
        if not ids:
            return 0
        gone = 0
        with self.lock, self.db:
            for vid in ids:
                row = self.db.execute("SELECT rowid FROM videos WHERE video_id=?", (vid,)).fetchone()
                if row is None:
                    continue
                self.db.execute("DELETE FROM search_fts WHERE rowid=?", (row[0],))
                for table in ("search_tags", "search_facts", "search_vectors", "search_text_vectors", "videos"):
                    self.db.execute(f"DELETE FROM {table} WHERE video_id=?", (vid,))
                gone += 1
            self.db.execute(BUMP_VERSION)
        return gone

    def resolve_id(self, prefix: str, limit: int = 10) -> list[str]:
        prefix = (prefix or "").strip().lower()
        if not prefix or not all(c in "0123456789abcdef" for c in prefix):
            return []
        with self.lock:
            rows = self.db.execute("SELECT video_id FROM videos WHERE video_id >= ? AND video_id < ? "
                                   "ORDER BY video_id LIMIT ?", (prefix, prefix + "g", limit)).fetchall()  # fmt: skip
        return [r[0] for r in rows]

    def duplicates_of(self, canonical_id: str) -> list[Document]:
        docs = self._docs("SELECT doc FROM videos WHERE duplicate_of=? AND video_id<>?", [canonical_id, canonical_id])
        return sorted(docs, key=lambda d: (-(d.get("similarity") or 0.0), d["video_id"]))

    @property
    def searcher(self) -> EmbeddedSearch:
        """The embedded search engine over this file (FTS5 + faiss), built on first use."""
        if self._searcher is None:
            self._searcher = EmbeddedSearch(self)
        return self._searcher

    def search(self, query: SearchQuery) -> SearchResult:
        return self.searcher.search(query)

    def similar(self, video_id: str, query: SearchQuery | None = None) -> SearchResult:
        return self.searcher.similar(video_id, query)

    def close(self) -> None:
        self.db.close()


# --- the search side tables, written with every upsert ------------------------------------------
def _num(value, cast):
    try:
        return cast(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _str(value) -> str | None:
    return value if isinstance(value, str) or value is None else str(value)


def _vector(doc: Mapping[str, Any]) -> np.ndarray | None:
    vec = doc.get("vector")
    if not isinstance(vec, (list, tuple)) or not vec:
        return None
    try:
        arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return None
    norm = float(np.linalg.norm(arr))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    return arr / norm


def index_rows(db: sqlite3.Connection, docs: Iterable[Mapping[str, Any]]) -> None:
    """Write the search side of ``docs`` (inside the caller's transaction). Never raises on odd docs."""
    for doc in docs:
        vid = doc["video_id"]
        texts = searchable_text(doc)
        tags = doc_tags(doc)
        emb_text = embedding_text(doc)
        text_hash = hashlib.sha1(emb_text.encode("utf-8")).hexdigest() if emb_text else None
        license_ = doc.get("license")
        vec = _vector(doc)
        rowid = db.execute("SELECT rowid FROM videos WHERE video_id=?", (vid,)).fetchone()[0]
        db.execute("DELETE FROM search_fts WHERE rowid=?", (rowid,))  # FTS rowid = videos.rowid
        db.execute("DELETE FROM search_tags WHERE video_id=?", (vid,))
        db.execute(
            "INSERT OR REPLACE INTO search_facts (video_id, status, source, license, duration, width, height, "
            "embedding_model, text_hash, license_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                vid, doc.get("status") or "indexed", _str(doc.get("source")),
                license_.strip().lower() if isinstance(license_, str) else None,
                _num(doc.get("duration"), float), _num(doc.get("width"), int),
                _num(doc.get("height"), int), doc.get("embedding_model") if vec is not None else None,
                text_hash, doc_license_id(doc),
            ),
        )  # fmt: skip
        db.execute(
            "INSERT INTO search_fts (rowid, video_id, title, description, caption, ocr, transcript, tags) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (rowid, vid, *(texts[c] for c in FTS_COLUMNS[:-1]), " ".join(tags)),
        )
        db.executemany("INSERT OR IGNORE INTO search_tags VALUES (?,?)", [(vid, t) for t in tags])
        if vec is not None:
            db.execute(
                "INSERT OR REPLACE INTO search_vectors VALUES (?,?,?,?)",
                (vid, str(doc.get("embedding_model") or ""), int(vec.shape[0]), vec.tobytes()),
            )
        else:
            db.execute("DELETE FROM search_vectors WHERE video_id=?", (vid,))
    db.execute(BUMP_VERSION)


def migrate(db: sqlite3.Connection) -> None:
    """Bring a catalogue file written by an older version up to this schema (columns added,
    search rows rebuilt so the new columns are filled)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(search_facts)")}
    if "license_id" not in columns:
        with db:
            db.execute("ALTER TABLE search_facts ADD COLUMN license_id TEXT")
            rows = db.execute("SELECT doc FROM videos").fetchall()
            index_rows(db, [json.loads(r[0]) for r in rows])


def backfill(db: sqlite3.Connection) -> int:
    """Index rows written before the search tables existed (older catalogue files)."""
    rows = db.execute(
        "SELECT v.doc FROM videos v LEFT JOIN search_facts f ON f.video_id = v.video_id "
        "WHERE f.video_id IS NULL"
    ).fetchall()
    if rows:
        with db:
            index_rows(db, [json.loads(r[0]) for r in rows])
    return len(rows)


# --- the engine ----------------------------------------------------------------------------------
class _VectorSet:
    """Vectors of one kind and model in a faiss inner-product index keyed by videos.rowid."""

    def __init__(self, ids: list[int], vecs: list[np.ndarray]):
        import faiss  # slow to import: only when a query needs vectors

        self.dim = int(vecs[0].shape[0]) if vecs else 0
        self.by_id = dict(zip(ids, vecs))
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(max(self.dim, 1)))
        if vecs:
            self.index.add_with_ids(np.stack(vecs).astype(np.float32), np.asarray(ids, dtype=np.int64))

    def search(self, vec: np.ndarray, allowed: Iterable[int], k: int) -> dict[int, float]:
        import faiss

        allowed = np.fromiter((i for i in allowed if i in self.by_id), dtype=np.int64)
        if not len(allowed) or vec.shape[0] != self.dim:
            return {}
        k = min(k, len(allowed))
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, ids = self.index.search(vec.reshape(1, -1).astype(np.float32), k, params=params)
        return {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}


class EmbeddedSearch:
    """Search over a ``SqliteCatalogue``: FTS5 BM25 blended with MiniLM cosine, faiss vectors."""

    def __init__(self, catalogue: SqliteCatalogue, embedder=None, text_to_video=None):
        self.catalogue = catalogue
        self.config = catalogue.config
        self.db: sqlite3.Connection = catalogue.db
        self.lock: threading.Lock = catalogue.lock
        self.alpha = self.config.bm25_weight
        self._embedder = embedder
        self._text_to_video = text_to_video  # a CLIP text encoder hook (see textembed.py)
        self._cache: dict[tuple, tuple[int, Any]] = {}
        # Texts a query embeds before it answers (None: all). The search page sets a cap and
        # embeds the rest in the background (warm_text_vectors), so no query waits minutes.
        self.embed_limit: int | None = None

    def warm_text_vectors(self, batch: int = 64, stop: threading.Event | None = None) -> int:
        """Embed every missing text in batches (for a background thread). Returns how many."""
        done = 0
        while not (stop and stop.is_set()):
            n = self.refresh_text_vectors(limit=batch)
            done += n
            if n < batch:
                break
        return done

    # -- models, loaded on first use --
    @property
    def embedder(self) -> TextEmbedder | None:
        if self._embedder is None and self.config.semantic:
            self._embedder = TextEmbedder.shared(self.config.text_model, self.config.device)
        return self._embedder

    @property
    def text_to_video(self):
        if self._text_to_video is None and self.config.clip_model:
            self._text_to_video = ClipTextEncoder.shared(self.config.clip_model, self.config.device)
        return self._text_to_video

    # -- state --
    def _version(self) -> int:
        row = self.db.execute("SELECT value FROM search_state WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def _cached(self, key: tuple, build):
        """``build()``, cached until the catalogue changes (its version counter moves)."""
        version = self._version()
        cached = self._cache.get(key)
        if cached and cached[0] == version:
            return cached[1]
        value = build()
        self._cache[key] = (version, value)
        return value

    def _vectors(self, kind: str, model: str) -> _VectorSet:
        def build():
            table = "search_vectors" if kind == "video" else "search_text_vectors"
            rows = self.db.execute(
                f"SELECT v.rowid, t.vec FROM {table} t JOIN videos v ON v.video_id = t.video_id WHERE t.model=?",
                (model,),
            ).fetchall()
            return _VectorSet([r[0] for r in rows], [np.frombuffer(r[1], dtype=np.float32) for r in rows])

        return self._cached((kind, model), build)

    def refresh_text_vectors(self, limit: int | None = None) -> int:
        """Embed the text of documents that have none (or whose text changed), at most ``limit``.

        Vectors are stored back in the catalogue file, so each text is embedded once. Returns
        how many were embedded.
        """
        embedder = self.embedder
        if embedder is None:
            return 0
        with self.lock:
            rows = self.db.execute(
                "SELECT f.video_id, f.text_hash, v.doc FROM search_facts f "
                "JOIN videos v ON v.video_id = f.video_id "
                "LEFT JOIN search_text_vectors t ON t.video_id = f.video_id "
                "  AND t.model = ? AND t.text_hash = f.text_hash "
                "WHERE f.text_hash IS NOT NULL AND t.video_id IS NULL LIMIT ?",
                (embedder.name, -1 if limit is None else limit),
            ).fetchall()
        if not rows:
            return 0
        if len(rows) >= 500:
            log.info("embedding the text of %d document(s) for semantic search (once)", len(rows))
        texts = [embedding_text(json.loads(r[2])) for r in rows]
        vecs = embedder.encode(texts)
        with self.lock, self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO search_text_vectors VALUES (?,?,?,?)",
                [(r[0], embedder.name, r[1], v.astype(np.float32).tobytes()) for r, v in zip(rows, vecs)],
            )
            self.db.execute(BUMP_VERSION)
        return len(rows)

    def _candidates(self, q: SearchQuery, extra: str = "", args: list | None = None) -> dict[str, int]:
        """video_id -> videos.rowid of documents passing the filters, newest first."""
        where, params = ["1=1"], []
        if q.status:
            where.append("f.status = ?"), params.append(q.status)
        if q.source:
            where.append("f.source = ?"), params.append(q.source)
        if q.license:  # an id, a family (cc-by: CC-BY-* only) or "open": crawler.licenses.matches
            ids = ids_matching(q.license)
            where.append(f"f.license_id IN ({','.join('?' * len(ids))})" if ids else "0"), params.extend(ids)
        if q.min_duration is not None:
            where.append("f.duration >= ?"), params.append(q.min_duration)
        if q.max_duration is not None:
            where.append("f.duration <= ?"), params.append(q.max_duration)
        if q.min_width is not None:
            where.append("f.width >= ?"), params.append(q.min_width)
        if q.min_height is not None:
            where.append("f.height >= ?"), params.append(q.min_height)
        for tag in q.tags:
            where.append("f.video_id IN (SELECT video_id FROM search_tags WHERE tag = ?)"), params.append(tag)
        if extra:
            where.append(extra), params.extend(args or [])
        sql = (
            "SELECT f.video_id, v.rowid FROM search_facts f JOIN videos v ON v.video_id = f.video_id "
            f"WHERE {' AND '.join(where)} ORDER BY v.updated_at DESC, f.video_id"
        )
        return {r[0]: r[1] for r in self.db.execute(sql, params)}

    def _fts(self, text: str, allowed: Mapping[str, int]) -> dict[str, float]:
        tokens = re.findall(r"\w+", text.lower())
        tokens = [t for t in tokens if t not in STOPWORDS] or tokens
        if not tokens:
            return {}
        expr = " OR ".join(f'"{t}"' for t in dict.fromkeys(tokens))
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        rows = self.db.execute(
            f"SELECT video_id, bm25(search_fts, {weights}) FROM search_fts WHERE search_fts MATCH ?", (expr,)
        ).fetchall()
        scores = {vid: -float(s) for vid, s in rows if vid in allowed}
        best = max(scores.values(), default=0.0)
        return {vid: (s / best if best > 0 else 1.0) for vid, s in scores.items()}

    def _facet_values(self) -> dict[str, tuple]:
        """video_id -> (source, license_id, tags), cached until the catalogue changes."""

        def build():
            values: dict[str, tuple] = {}
            tags: dict[str, list[str]] = {}
            for vid, tag in self.db.execute("SELECT video_id, tag FROM search_tags"):
                tags.setdefault(vid, []).append(tag)
            for vid, source, license_ in self.db.execute("SELECT video_id, source, license_id FROM search_facts"):
                values[vid] = (source, license_, tuple(tags.get(vid, ())))
            return values

        return self._cached(("facets",), build)

    def _facets(self, ids: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
        values = self._facet_values()
        tags, sources, licenses = Counter(), Counter(), Counter()
        for vid in ids:
            row = values.get(vid)
            if row is None:
                continue
            source, license_, names = row
            if source is not None:
                sources[source] += 1
            if license_ is not None:
                licenses[license_] += 1
            tags.update(names)
        top = self.config.facet_size

        def ordered(counter):
            return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:top]

        return {"tags": ordered(tags), "sources": ordered(sources), "licenses": ordered(licenses)}

    def _page(self, q: SearchQuery, ranked: list[tuple[str, float, float | None, float | None]]):
        page = ranked[q.offset : q.offset + q.per_page]
        ids = [r[0] for r in page]
        docs = {}
        if ids:
            marks = ",".join("?" * len(ids))
            for vid, doc in self.db.execute(f"SELECT video_id, doc FROM videos WHERE video_id IN ({marks})", ids):
                docs[vid] = public_doc(json.loads(doc))
        return [
            SearchHit(vid, round(score, 6), docs[vid], text_score=ts, semantic_score=ss)
            for vid, score, ts, ss in page
            if vid in docs
        ]

    # -- the interface --
    def search(self, q: SearchQuery) -> SearchResult:
        semantic = bool(q.text) and q.semantic and self.embedder is not None
        if semantic:
            self.refresh_text_vectors(limit=self.embed_limit)
        with self.lock:
            allowed = self._candidates(q)
            if not q.text:
                ranked = [(vid, 0.0, None, None) for vid in allowed]
            else:
                ranked = self._rank_text(q, allowed, semantic)
            facets = self._facets([r[0] for r in ranked])
            hits = self._page(q, ranked)
        return SearchResult(q, len(ranked), hits, facets)

    def _rank_text(self, q: SearchQuery, allowed: dict[str, int], semantic: bool):
        bm25 = self._fts(q.text, allowed)
        cos: dict[str, float] = {}
        if semantic:
            qvec = self.embedder.encode([q.text])[0]
            vset = self._vectors("text", self.embedder.name)
            by_rowid = {rid: vid for vid, rid in allowed.items()}
            k = max(self.config.semantic_k, q.offset + q.per_page)
            for rid, score in vset.search(qvec, by_rowid, k).items():
                cos[by_rowid[rid]] = score
            for vid in bm25:  # exact similarity for text hits outside the semantic top-k
                if vid not in cos and allowed[vid] in vset.by_id:
                    cos[vid] = float(np.dot(vset.by_id[allowed[vid]], qvec))
        clip = self._clip_scores(q, allowed)
        alpha = self.alpha if (semantic or clip) else 1.0
        floor = self.config.semantic_min
        ranked = []
        for vid in allowed:
            ts = bm25.get(vid)
            ss = max(cos.get(vid, -1.0), clip.get(vid, -1.0))
            ss = ss if ss > -1.0 else None
            if ts is None and (ss is None or ss < floor):
                continue
            score = alpha * (ts or 0.0) + (1 - alpha) * max(ss or 0.0, 0.0)
            ranked.append((vid, score, ts, ss))
        ranked.sort(key=lambda r: (-r[1], r[0]))
        return ranked

    def _clip_scores(self, q: SearchQuery, allowed: dict[str, int]) -> dict[str, float]:
        """Text-to-video over the descriptors made by the configured CLIP model (hook)."""
        encoder = self.text_to_video
        if encoder is None or not q.text or not q.semantic:
            return {}
        vset = self._vectors("video", encoder.name)
        by_rowid = {rid: vid for vid, rid in allowed.items()}
        qvec = encoder.encode([q.text])[0]
        return {by_rowid[r]: s for r, s in vset.search(qvec, by_rowid, self.config.semantic_k).items()}

    def similar(self, video_id: str, q: SearchQuery | None = None) -> SearchResult:
        q = q or SearchQuery()
        with self.lock:
            row = self.db.execute("SELECT model, vec FROM search_vectors WHERE video_id=?", (video_id,)).fetchone()
            if row is None:
                return SearchResult(q, 0, [], {}, similar_to=video_id)
            model, qvec = row[0], np.frombuffer(row[1], dtype=np.float32)
            allowed = self._candidates(q, "f.embedding_model = ? AND f.video_id <> ?", [model, video_id])
            by_rowid = {rid: vid for vid, rid in allowed.items()}
            vset = self._vectors("video", model)
            scores = vset.search(qvec, by_rowid, max(q.offset + q.per_page, 1))
            ranked = sorted(((by_rowid[r], s, None, s) for r, s in scores.items()), key=lambda r: (-r[1], r[0]))
            facets = self._facets(list(allowed))
            hits = self._page(q, ranked)
        return SearchResult(q, len(allowed), hits, facets, similar_to=video_id)
