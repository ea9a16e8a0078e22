"""CatalogueConfig: everything the catalogue, its search and its commands take from settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import settings


@dataclass(frozen=True)
class CatalogueConfig:
    """Where the catalogue lives and how it searches; built once by ``from_settings``.

    ``url`` picks the backend (``processing.catalogue.BACKENDS``): empty or a file path is the
    embedded SQLite catalogue (empty: at ``path``), ``http(s)://`` is Elasticsearch.
    """

    url: str  # ELASTICSEARCH_URL, or a SQLite file path
    path: str  # CATALOGUE_PATH: the embedded catalogue's file when url is empty
    index: str  # ELASTICSEARCH_INDEX: the alias written and read on Elasticsearch
    api_key: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    ca_certs: str
    bulk_chunk: int
    max_retries: int
    backoff: float
    kibana_url: str
    kibana_api_key: str = field(repr=False)
    # search, on both backends
    text_model: str
    semantic: bool
    bm25_weight: float
    semantic_min: float
    semantic_k: int
    facet_size: int
    embed_per_query: int
    clip_model: str
    device: str
    export_dir: str

    def __post_init__(self):
        if not 0.0 <= self.bm25_weight <= 1.0:
            raise ValueError(f"SEARCH_BM25_WEIGHT must be in [0, 1], got {self.bm25_weight!r}")
        if not self.index or self.index != self.index.lower() or "*" in self.index:
            raise ValueError(f"ELASTICSEARCH_INDEX must be a lower-case index name, got {self.index!r}")
        for name in ("bulk_chunk", "semantic_k", "facet_size", "embed_per_query"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_retries < 0 or self.backoff < 0:
            raise ValueError(f"max_retries and backoff must be >= 0, got {self.max_retries!r}, {self.backoff!r}")

    @classmethod
    def from_settings(cls, **overrides: Any) -> CatalogueConfig:
        """The configuration from ``settings`` (read now), with ``overrides`` by field name."""
        cfg = cls(
            url=settings.ELASTICSEARCH_URL, path=str(settings.CATALOGUE_PATH), index=settings.ELASTICSEARCH_INDEX,
            api_key=settings.ELASTICSEARCH_API_KEY, username=settings.ELASTICSEARCH_USERNAME,
            password=settings.ELASTICSEARCH_PASSWORD, ca_certs=settings.ELASTICSEARCH_CA_CERTS,
            bulk_chunk=settings.ELASTICSEARCH_BULK_CHUNK, max_retries=settings.ELASTICSEARCH_MAX_RETRIES,
            backoff=settings.ELASTICSEARCH_BACKOFF, kibana_url=settings.KIBANA_URL,
            kibana_api_key=settings.KIBANA_API_KEY, text_model=settings.SEARCH_TEXT_MODEL,
            semantic=settings.SEARCH_SEMANTIC, bm25_weight=settings.SEARCH_BM25_WEIGHT,
            semantic_min=settings.SEARCH_SEMANTIC_MIN, semantic_k=settings.SEARCH_SEMANTIC_K,
            facet_size=settings.SEARCH_FACET_SIZE, embed_per_query=settings.SEARCH_EMBED_PER_QUERY,
            clip_model=settings.SEARCH_CLIP_MODEL, device=settings.SEARCH_DEVICE,
            export_dir=str(settings.DATA_DIR) + "/export",
        )  # fmt: skip
        return replace(cfg, **overrides) if overrides else cfg
