"""The query model and the embedded search engine: SQLite FTS5 for text, faiss for vectors.

The same ``SearchQuery`` / ``SearchResult`` serve both backends (``processing.elastic`` builds an
Elasticsearch request from the same query). The embedded engine keeps side tables next to the
catalogue's ``videos`` table, written in the same transaction as each upsert
(``index_rows``): facts to filter on, tags, an FTS5 table over the searchable text, and the video
descriptors. Text embeddings (MiniLM) are computed lazily by the searching process and stored
back, so workers never load a text model. Ranking blends BM25 (normalised to the best hit) with
the cosine similarity of MiniLM text embeddings; ``similar`` ranks by descriptor cosine, only
among videos whose descriptor comes from the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

import settings

log = logging.getLogger(__name__)
logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is not news

# The labelers whose "text" is searchable, and the FTS5 column each goes to.
TEXT_LABELS = {"caption": "caption", "ocr": "ocr", "transcript": "transcript"}
FTS_COLUMNS = ("title", "description", "caption", "ocr", "transcript", "tags")
# bm25() weights, in FTS_COLUMNS order (the leading video_id column is unindexed: weight 0).
BM25_WEIGHTS = (0.0, 3.0, 1.0, 1.5, 1.0, 1.0, 2.0)
FACETS = ("tags", "sources", "licenses")
MAX_PER_PAGE = 100
# Words too common to make a text match on their own (FTS5 has no stop-word list).
STOPWORDS = frozenset(
    "a an and are as at be by for from has in is it its of on or that the this to was were with"
    " video videos clip".split()
)


# --- the query model ------------------------------------------------------------------------
@dataclass
class SearchQuery:
    """What a user asks for. Empty ``text`` lists the filtered videos, newest first."""

    text: str = ""
    tags: list[str] = field(default_factory=list)  # every tag must be present
    source: str | None = None
    license: str | None = None  # case-insensitive exact match
    min_duration: float | None = None
    max_duration: float | None = None
    min_width: int | None = None
    min_height: int | None = None
    status: str | None = "indexed"  # kept videos by default; None or "any" for every state
    page: int = 1
    per_page: int = 20
    semantic: bool = True  # blend MiniLM text similarity with BM25

    def __post_init__(self):
        self.text = (self.text or "").strip()
        self.tags = [t.strip().lower() for t in (self.tags or []) if t and t.strip()]
        self.license = self.license.strip().lower() if self.license else None
        self.source = self.source.strip() if self.source else None
        if self.status in ("any", "all", ""):
            self.status = None
        if not isinstance(self.page, int) or self.page < 1:
            raise ValueError(f"page must be a positive integer, got {self.page!r}")
        if not isinstance(self.per_page, int) or not 1 <= self.per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be an integer in 1..{MAX_PER_PAGE}, got {self.per_page!r}")
        for name in ("min_duration", "max_duration", "min_width", "min_height"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SearchQuery:
        """Build from URL query parameters (lists or single values); bad numbers raise ValueError."""

        def one(name):
            value = params.get(name)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            return value if value not in ("", None) else None

        def num(name, cast):
            value = one(name)
            if value is None:
                return None
            try:
                return cast(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {value!r}") from None

        tags = params.get("tag") or []
        tags = [tags] if isinstance(tags, str) else list(tags)
        return cls(
            text=one("q") or "",
            tags=tags,
            source=one("source"),
            license=one("license"),
            min_duration=num("min_duration", float),
            max_duration=num("max_duration", float),
            min_width=num("min_width", int),
            min_height=num("min_height", int),
            status=one("status") or "indexed",
            page=num("page", int) or 1,
            per_page=num("per_page", int) or 20,
        )


@dataclass
class SearchHit:
    video_id: str
    score: float
    doc: dict[str, Any]  # the catalogue document without its vectors
    text_score: float | None = None  # normalised BM25 (best hit = 1)
    semantic_score: float | None = None  # cosine of the text (or CLIP) embeddings


@dataclass
class SearchResult:
    query: SearchQuery
    total: int
    hits: list[SearchHit]
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    similar_to: str | None = None
    backend: str = "embedded"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["facets"] = {k: [{"value": v, "count": n} for v, n in vals] for k, vals in self.facets.items()}
        return out


# --- what a document contributes to search (shared with the Elasticsearch backend) ----------
def label_text(doc: Mapping[str, Any], name: str) -> str:
    label = (doc.get("labels") or {}).get(name)
    text = label.get("text") if isinstance(label, dict) else None
    return text if isinstance(text, str) else ""


def doc_tags(doc: Mapping[str, Any]) -> list[str]:
    """Source tags plus every labeler's tag names, lower-cased, first occurrence order."""
    names: list[str] = []
    for tag in doc.get("tags") or []:
        if isinstance(tag, str):
            names.append(tag)
    for label in (doc.get("labels") or {}).values():
        if isinstance(label, dict):
            for tag in label.get("tags") or []:
                name = tag.get("name") if isinstance(tag, dict) else tag
                if isinstance(name, str):
                    names.append(name)
    seen: dict[str, None] = {}
    for name in names:
        name = name.strip().lower()
        if name:
            seen.setdefault(name, None)
    return list(seen)


def searchable_text(doc: Mapping[str, Any]) -> dict[str, str]:
    """The text fields of a document, by FTS column (tags excluded)."""

    def text(value):
        return value if isinstance(value, str) else ""

    out = {"title": text(doc.get("title")), "description": text(doc.get("description"))}
    for name, column in TEXT_LABELS.items():
        out[column] = label_text(doc, name)
    return out


def embedding_text(doc: Mapping[str, Any]) -> str:
    """The text MiniLM embeds for semantic search: title, description, caption, OCR, transcript."""
    parts = [p.strip() for p in searchable_text(doc).values() if p and p.strip()]
    return "\n".join(parts)[:4000]


def public_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document as shown to people: without its vectors."""
    return {k: v for k, v in doc.items() if k not in ("vector", "text_vector")}


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


# --- the side tables, written with every upsert ----------------------------------------------
SCHEMA = """
CREATE TABLE IF NOT EXISTS search_facts (
    video_id TEXT PRIMARY KEY, status TEXT, source TEXT, license TEXT, duration REAL,
    width INTEGER, height INTEGER, embedding_model TEXT, text_hash TEXT
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


def ensure_schema(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)


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
            "INSERT OR REPLACE INTO search_facts VALUES (?,?,?,?,?,?,?,?,?)",
            (
                vid, doc.get("status") or "indexed", _str(doc.get("source")),
                license_.strip().lower() if isinstance(license_, str) else None,
                _num(doc.get("duration"), float), _num(doc.get("width"), int),
                _num(doc.get("height"), int), doc.get("embedding_model") if vec is not None else None,
                text_hash,
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
    db.execute(
        "INSERT INTO search_state VALUES ('version', 1) "
        "ON CONFLICT(key) DO UPDATE SET value = value + 1"
    )


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


# --- the engine ------------------------------------------------------------------------------
class _VectorSet:
    """Vectors of one kind and model in a faiss inner-product index keyed by videos.rowid."""

    def __init__(self, ids: list[int], vecs: list[np.ndarray]):
        import faiss

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

    def __init__(self, catalogue, embedder=None, text_to_video=None, alpha: float | None = None):
        self.catalogue = catalogue
        self.db: sqlite3.Connection = catalogue.db
        self.lock: threading.Lock = catalogue._lock
        self.alpha = settings.SEARCH_BM25_WEIGHT if alpha is None else alpha
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (SEARCH_BM25_WEIGHT) must be in [0, 1], got {self.alpha!r}")
        self._embedder = embedder
        self._text_to_video = text_to_video  # a CLIP text encoder hook (see textembed.py)
        self._cache: dict[tuple, tuple[int, _VectorSet]] = {}
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
    def embedder(self):
        if self._embedder is None and settings.SEARCH_SEMANTIC:
            from processing.textembed import TextEmbedder

            self._embedder = TextEmbedder.shared()
        return self._embedder

    @property
    def text_to_video(self):
        if self._text_to_video is None and settings.SEARCH_CLIP_MODEL:
            from processing.textembed import ClipTextEncoder

            self._text_to_video = ClipTextEncoder.shared(settings.SEARCH_CLIP_MODEL)
        return self._text_to_video

    # -- state --
    def _version(self) -> int:
        row = self.db.execute("SELECT value FROM search_state WHERE key='version'").fetchone()
        return int(row[0]) if row else 0

    def _vectors(self, kind: str, model: str) -> _VectorSet:
        version = self._version()
        cached = self._cache.get((kind, model))
        if cached and cached[0] == version:
            return cached[1]
        table = "search_vectors" if kind == "video" else "search_text_vectors"
        rows = self.db.execute(
            f"SELECT v.rowid, t.vec FROM {table} t JOIN videos v ON v.video_id = t.video_id WHERE t.model=?",
            (model,),
        ).fetchall()
        vset = _VectorSet([r[0] for r in rows], [np.frombuffer(r[1], dtype=np.float32) for r in rows])
        self._cache[(kind, model)] = (version, vset)
        return vset

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
            self.db.execute(
                "INSERT INTO search_state VALUES ('version', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1"
            )
        return len(rows)

    def _candidates(self, q: SearchQuery, extra: str = "", args: list | None = None) -> dict[str, int]:
        """video_id -> videos.rowid of documents passing the filters, newest first."""
        where, params = ["1=1"], []
        if q.status:
            where.append("f.status = ?"), params.append(q.status)
        if q.source:
            where.append("f.source = ?"), params.append(q.source)
        if q.license:
            where.append("f.license = ?"), params.append(q.license)
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
        """video_id -> (source, license, tags), cached until the catalogue changes."""
        version = self._version()
        cached = self._cache.get(("facets",))
        if cached and cached[0] == version:
            return cached[1]
        values: dict[str, tuple] = {}
        tags: dict[str, list[str]] = {}
        for vid, tag in self.db.execute("SELECT video_id, tag FROM search_tags"):
            tags.setdefault(vid, []).append(tag)
        for vid, source, license_ in self.db.execute("SELECT video_id, source, license FROM search_facts"):
            values[vid] = (source, license_, tuple(tags.get(vid, ())))
        self._cache[("facets",)] = (version, values)
        return values

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
        top = settings.SEARCH_FACET_SIZE

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
            k = max(settings.SEARCH_SEMANTIC_K, q.offset + q.per_page)
            for rid, score in vset.search(qvec, by_rowid, k).items():
                cos[by_rowid[rid]] = score
            for vid in bm25:  # exact similarity for text hits outside the semantic top-k
                if vid not in cos and allowed[vid] in vset.by_id:
                    cos[vid] = float(np.dot(vset.by_id[allowed[vid]], qvec))
        clip = self._clip_scores(q, allowed)
        alpha = self.alpha if (semantic or clip) else 1.0
        floor = settings.SEARCH_SEMANTIC_MIN
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
        return {by_rowid[r]: s for r, s in vset.search(qvec, by_rowid, settings.SEARCH_SEMANTIC_K).items()}

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
