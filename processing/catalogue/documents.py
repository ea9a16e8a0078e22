"""What a catalogue document contributes to search and exports: its text, tags, public view.

Pure functions over ``Document`` dicts, shared by both backends, the exports and the search
page. They never raise on odd documents: a field of the wrong type counts as missing.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from crawler.licenses import license_id_of

# The labelers whose "text" is searchable, and the text field each becomes.
TEXT_LABELS = {"caption": "caption", "ocr": "ocr", "transcript": "transcript"}
VECTOR_FIELDS = ("vector", "text_vector")


def label_text(doc: Mapping[str, Any], name: str) -> str:
    """The ``text`` of labeler ``name`` ("" when absent or not a string)."""
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
    """The text fields of a document: title, description and the TEXT_LABELS (tags excluded)."""

    def text(value):
        return value if isinstance(value, str) else ""

    out = {"title": text(doc.get("title")), "description": text(doc.get("description"))}
    for name, column in TEXT_LABELS.items():
        out[column] = label_text(doc, name)
    if not out["caption"]:  # a caption the source gave (a URL list's column), when no model wrote one
        out["caption"] = text(doc.get("caption"))
    return out


def embedding_text(doc: Mapping[str, Any]) -> str:
    """The text MiniLM embeds for semantic search: title, description, caption, OCR, transcript."""
    parts = [p.strip() for p in searchable_text(doc).values() if p and p.strip()]
    return "\n".join(parts)[:4000]


def public_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document as shown to people: without its vectors."""
    return {k: v for k, v in doc.items() if k not in VECTOR_FIELDS}


def doc_license_id(doc: Mapping[str, Any]) -> str:
    """The document's normalised licence (``license_id``; computed from ``license`` for older documents)."""
    value = doc.get("license_id")
    return value if isinstance(value, str) and value else license_id_of(dict(doc))


def doc_copies(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The provenance entries of the other places the video was found (``copies``; see crawler/provenance.py)."""
    copies = doc.get("copies")
    return [c for c in copies if isinstance(c, dict)] if isinstance(copies, list) else []


def doc_places(doc: Mapping[str, Any]) -> list[str]:
    """Every URL and path the video was found at: its own, its page, and every copy's."""
    out: list[str] = []
    for rec in [doc, *doc_copies(doc)]:
        for name in ("url", "page_url", "path"):
            value = rec.get(name)
            if isinstance(value, str) and value and value not in out:
                out.append(value)
    return out


def doc_domains(doc: Mapping[str, Any]) -> list[str]:
    """The hosts of every place (``a.b.example.org`` gives it, ``b.example.org`` and ``example.org``)."""
    out: list[str] = []
    for value in doc_places(doc):
        try:
            host = (urlsplit(value).hostname or "").lower().rstrip(".") if "://" in value else ""
        except ValueError:
            continue
        labels = host.split(".") if host else []
        for i in range(max(1, len(labels) - 1) if labels else 0):
            name = ".".join(labels[i:])
            if name not in out:
                out.append(name)
    return out
