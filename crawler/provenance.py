"""Where a video was found: the provenance of every copy, kept in Redis and merged into its document.

A video is one document (``video_id`` = sha256 of its bytes), but it may be found at many
places. ``CopyBook`` keeps, per canonical video, one entry per other place
(``RedisKeys.copies(video_id)``, a hash keyed by the place's URL or path):

- ``kind: "exact"``: the same bytes at another URL or path. The crawl's dedup writes it the
  moment it sees the copy (the copy has no document of its own: same id);
- ``kind: "near"``: a near-duplicate (another video id, ``similarity`` < 1), written by the
  workers when they decide it, with the near-duplicate's own exact copies.

Each entry is ``provenance(...)``: url, page_url, path, source, license (raw), license_id,
title, uploader, found_at, video_id, kind, similarity. The workers write them into the
canonical's document as ``copies`` (``merge_copies``), so the catalogue, ``duplicates <id>``
and the export's duplicate map list every place; ``python -m processing forget`` deletes them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import redis

from crawler.keys import RedisKeys
from crawler.licenses import license_id_of

EXACT = "exact"
NEAR = "near"
FIELDS = ("url", "page_url", "path", "source", "license", "license_id", "title", "uploader")


def provenance(record: Any, kind: str = EXACT, *, video_id: str | None = None,
               similarity: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The provenance entry of a ``VideoItem`` or a document found at one place."""
    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name, None)
    entry = {name: get(name) for name in FIELDS}
    entry["license_id"] = entry["license_id"] or license_id_of(record)
    entry["found_at"] = get("fetched_at") or get("found_at")
    entry["video_id"] = video_id or get("video_id")
    entry["kind"] = kind
    entry["similarity"] = 1.0 if kind == EXACT and similarity is None else similarity
    return entry


def is_exact_copy(item: Any) -> bool:
    """True for a byte-identical copy found at another place (the crawl's dedup decided it)."""
    vid = getattr(item, "video_id", None)
    return getattr(item, "status", None) == "duplicate" and bool(vid) and getattr(item, "duplicate_of", None) == vid


def place(entry: dict[str, Any]) -> str:
    """The hash field of an entry: its URL, else its path."""
    return str(entry.get("url") or entry.get("path") or "")


def merge_copies(doc: dict[str, Any], entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``doc`` with ``copies``: the entries, minus the document's own place, oldest find first."""
    own = {doc.get("url"), doc.get("path")} - {None}
    seen: dict[str, dict] = {}
    for e in entries:
        key = place(e)
        if key and key not in own and e.get("url") not in own:
            seen[key] = e
    doc["copies"] = sorted(seen.values(), key=lambda e: (str(e.get("found_at") or ""), place(e)))
    return doc


class CopyBook:
    """Copies by canonical video id, in Redis; shared by the crawl and the workers."""

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.keys = keys

    def add(self, video_id: str, entries: Iterable[dict[str, Any]]) -> int:
        """Record entries under ``video_id`` (a place already recorded is replaced); returns how many."""
        mapping = {place(e): json.dumps(e, ensure_ascii=False, sort_keys=True) for e in entries if place(e)}
        if mapping:
            self.client.hset(self.keys.copies(video_id), mapping=mapping)
        return len(mapping)

    def entries(self, video_id: str) -> list[dict[str, Any]]:
        raw = self.client.hgetall(self.keys.copies(video_id))
        out = []
        for value in raw.values():
            try:
                out.append(json.loads(value))
            except ValueError:
                continue
        return out

    def many(self, video_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """``entries`` of several videos in one round trip."""
        ids = list(dict.fromkeys(v for v in video_ids if v))
        if not ids:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for vid in ids:
                pipe.hgetall(self.keys.copies(vid))
            answers = pipe.execute()
        out = {}
        for vid, raw in zip(ids, answers):
            entries = []
            for value in raw.values():
                try:
                    entries.append(json.loads(value))
                except ValueError:
                    continue
            out[vid] = entries
        return out

    def delete(self, video_ids: Iterable[str]) -> None:
        ids = [self.keys.copies(v) for v in video_ids if v]
        if ids:
            self.client.delete(*ids)
