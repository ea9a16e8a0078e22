"""The catalogue: where finished documents land, behind one interface, backends chosen by URL.

``open_catalogue()`` picks the backend from ``BACKENDS`` by the scheme of the configured URL,
as Scrapy picks a ``FILES_STORE`` backend: empty (or a file path) is the embedded SQLite
catalogue, ``http(s)://`` is Elasticsearch (``ELASTICSEARCH_URL``). Every backend implements
``Catalogue`` (``base.py``) and is built by its ``from_config(CatalogueConfig)``.
"""

from __future__ import annotations

from importlib import import_module
from urllib.parse import urlsplit

from processing.catalogue.base import Catalogue, Document, SearchHit, SearchQuery, SearchResult
from processing.catalogue.config import CatalogueConfig
from processing.catalogue.sqlite import SqliteCatalogue

BACKENDS = {
    "": "processing.catalogue.sqlite:SqliteCatalogue",
    "http": "processing.catalogue.elastic:ElasticCatalogue",
    "https": "processing.catalogue.elastic:ElasticCatalogue",
}

__all__ = ["BACKENDS", "Catalogue", "CatalogueConfig", "Document", "SearchHit", "SearchQuery", "SearchResult",
           "SqliteCatalogue", "open_catalogue"]  # fmt: skip


def open_catalogue(config: CatalogueConfig | str | None = None) -> Catalogue:
    """The backend for ``config`` (default: from settings; a string is taken as its ``url``)."""
    if not isinstance(config, CatalogueConfig):
        config = CatalogueConfig.from_settings(**({} if config is None else {"url": config}))
    scheme = urlsplit(config.url).scheme if config.url else ""
    if scheme not in BACKENDS:
        raise ValueError(f"no catalogue backend for {config.url!r}: use a file path or one of "
                         + ", ".join(f"{s}://" for s in BACKENDS if s))  # fmt: skip
    module, _, name = BACKENDS[scheme].partition(":")
    return getattr(import_module(module), name).from_config(config)
