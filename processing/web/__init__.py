"""The search page: ``python -m processing serve`` (a JSON API and one static HTML/JS page)."""

from processing.web.server import SearchServer

__all__ = ["SearchServer"]
