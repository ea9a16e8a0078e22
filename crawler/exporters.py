"""Scrapy's JSON feed exporters, keeping file names that are not UTF-8: lone surrogates become JSON escapes.

A local file named with bytes that are not UTF-8 keeps them in ``item.path`` through
``surrogateescape`` (``os.fsencode(item.path)`` is the name on disk). Scrapy's exporters
encode strictly and would drop that item from the feed; these write each surrogate as the
JSON escape ``\\udcXX`` (``backslashreplace`` gives exactly that inside a JSON string, whose
own backslashes are already escaped), so the line is valid UTF-8 JSON and ``json.loads``
gives the same string back. ``FEED_EXPORTERS`` in settings selects them.
"""

from __future__ import annotations

from scrapy import exporters


def _encode(text: str, encoding: str | None) -> bytes:
    return text.encode(encoding or "utf-8", "backslashreplace")


class JsonLinesItemExporter(exporters.JsonLinesItemExporter):
    """``jsonlines`` / ``jl`` feeds."""

    def export_item(self, item) -> None:
        data = self.encoder.encode(dict(self.get_serialized_fields(item))) + "\n"
        self.file.write(_encode(data, self.encoding))


class JsonItemExporter(exporters.JsonItemExporter):
    """``json`` feeds (one array)."""

    def export_item(self, item) -> None:
        data = _encode(self.encoder.encode(dict(self.get_serialized_fields(item))), self.encoding)
        self._add_comma_after_first()
        self.file.write(data)
