"""The catalogue's contract: the ``Catalogue`` base class, ``Document``, and the query model.

Every backend (``processing.catalogue.sqlite``, ``processing.catalogue.elastic``) implements
``Catalogue`` and answers the same ``SearchQuery`` with a ``SearchResult``. Workers only
``upsert``; the CLI and the search page read. Writes are idempotent by ``video_id``: writing a
document again replaces it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from crawler.licenses import check_query
from crawler.takedowns import place_key
from processing.catalogue.documents import doc_domains, doc_places

# A document is VideoItem.to_dict() plus, optionally:
#   "vector": the video descriptor (list of floats, L2-normalised) of `embedding_model`.
Document = dict[str, Any]

MAX_PER_PAGE = 100


@dataclass
class SearchQuery:
    """What a user asks for. Empty ``text`` lists the filtered videos, newest first."""

    text: str = ""
    tags: list[str] = field(default_factory=list)  # every tag must be present
    source: str | None = None
    license: str | None = None  # an id (CC-BY-4.0), a family (cc-by: CC-BY-* only) or "open" (crawler/licenses.py)
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
        self.license = check_query(self.license) if self.license and self.license.strip() else None
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

    # -- reading for people: the same query features on every backend --
    def search(self, query: SearchQuery) -> SearchResult:
        """Full-text + semantic search with filters, facets and paging."""
        raise NotImplementedError(f"{type(self).__name__} does not search")

    def similar(self, video_id: str, query: SearchQuery | None = None) -> SearchResult:
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

    def remove(self, video_ids: Iterable[str]) -> int:
        """Delete documents (and their search rows) by id; returns how many were there (takedowns)."""
        raise NotImplementedError(f"{type(self).__name__} does not remove documents")

    def resolve_id(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids that start with ``prefix`` (hex), at most ``limit``, in order: for ids typed short, as git does."""
        prefix = (prefix or "").strip().lower()
        if not prefix:
            return []
        return sorted(d["video_id"] for d in self.iter_all() if str(d.get("video_id", "")).startswith(prefix))[:limit]

    def find_places(self, urls: Iterable[str] = (), domain: str | None = None) -> list[Document]:
        """Documents found at one of ``urls`` (their own URL, page, path or a copy's) or on ``domain``
        (and its subdomains). This default reads every document; backends may index them."""
        wanted = {place_key(u) for u in urls} - {None}
        out = []
        for doc in self.iter_all():
            if (wanted and wanted & {place_key(p) for p in doc_places(doc)}) or (domain and domain in doc_domains(doc)):
                out.append(doc)
        return out

    def iter_all(self, status: str | None = None, batch: int = 500) -> Iterator[Document]:
        """Every document (optionally of one status), in a stable order, for exports."""
        offset = 0
        while True:
            docs = self.list(status=status, limit=batch, offset=offset)
            yield from docs
            if len(docs) < batch:
                return
            offset += batch

    def refresh(self) -> None:
        """Make every write so far visible to searches and counts.

        Writers call it when a run ends (``work --until-empty``). Backends whose writes are
        visible on commit (SQLite) need do nothing.
        """

    def close(self) -> None:
        """Release connections (optional)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
