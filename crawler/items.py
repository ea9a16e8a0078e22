"""The item contract: one flat record per video, shared by the crawl and the workers.

It imports nothing from Scrapy, so workers use it without Scrapy installed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# States. Every video ends in exactly one final state (indexed, duplicate, rejected or failed),
# recorded and counted by URL in the ledger (crawler/ledger.py): nothing disappears unrecorded.
NEW = "new"  # in the crawl's item pipelines, not decided yet
QUEUED = "queued"  # handed to the workers' stream
INDEXED = "indexed"  # processed and written to the catalogue
DUPLICATE = "duplicate"  # exact (sha256) or near duplicate of `duplicate_of`
REJECTED = "rejected"  # a deliberate filter; reason in `errors`
FAILED = "failed"  # an error at a stage; retryable; stage -> reason in `errors`
STATES = (NEW, QUEUED, INDEXED, DUPLICATE, REJECTED, FAILED)


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class VideoItem:
    """One video, from discovery to the catalogue.

    Identity: ``video_id`` is the sha256 hex digest of the file's bytes (set by the dedup
    pipeline). Stages add fields; none renames one. ``errors`` maps a stage name
    (``download``, ``probe``, ``filters``, ``frames``, ``embed``...) to a short stable reason
    code, optionally followed by ``": "`` and the raw message.

    Mandatory: ``url`` and ``source``. Everything else is optional (yt-dlp's rule: a missing
    title or licence is not an error).
    """

    url: str
    source: str
    # discovery (spider)
    page_url: str | None = None
    title: str | None = None
    description: str | None = None
    uploader: str | None = None
    license: str | None = None  # raw, as the source gives it (a URL, a name)
    license_id: str | None = None  # normalised: an SPDX id, "public-domain" or "unknown" (crawler/licenses.py)
    published: str | None = None  # ISO date or datetime as the source gives it
    thumbnail: str | None = None  # a URL from the source page
    duration_hint: float | None = None  # seconds, as the page claims it
    tags: list[str] = field(default_factory=list)  # source tags (yt-dlp, page keywords)
    view_count: int | None = None
    caption: str | None = None  # as the source gives it (URL lists); labels["caption"] is a model's
    extra: dict[str, Any] = field(default_factory=dict)  # source fields without a field here (list columns...)
    extractor: str | None = None  # yt-dlp extractor key, e.g. "Youtube", "Generic"
    platform_id: str | None = None  # "<extractor>:<id>" when a platform names the video
    download_via: str | None = None  # "files" | "ytdlp" | "local"
    # download + exact dedup
    fetched_at: str | None = None
    path: str | None = None  # where the bytes are (a path or FILES_STORE URI)
    size_bytes: int | None = None
    sha256: str | None = None
    video_id: str | None = None
    # probe
    container: str | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    bit_rate: int | None = None
    video_bit_rate: int | None = None
    audio_bit_rate: int | None = None
    audio_channels: int | None = None
    audio_sample_rate: int | None = None
    rotation: int | None = None
    frame_count: int | None = None
    # perceptual hash (16 hex chars = 64 bits, Hamming-comparable)
    phash: str | None = None
    # outcome
    status: str = NEW
    duplicate_of: str | None = None
    similarity: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # processing (added by the workers)
    thumbnail_path: str | None = None
    embedding_model: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)  # labeler name -> its output
    models: dict[str, str] = field(default_factory=dict)  # field/labeler -> model that made it
    scenes: list[dict[str, float]] = field(default_factory=list)  # [{"start", "end"}] s (ScenesStage)
    processed_at: str | None = None

    # -- helpers ------------------------------------------------------------------------
    def fail(self, stage: str, reason: str, message: str | None = None) -> VideoItem:
        """Record a failure at ``stage``: retryable, with a stable reason code."""
        self.status = FAILED
        self.errors[stage] = f"{reason}: {message}" if message else reason
        return self

    def reject(self, stage: str, reason: str, message: str | None = None) -> VideoItem:
        """Record a deliberate rejection (filter, opt-out, not a video)."""
        self.status = REJECTED
        self.errors[stage] = f"{reason}: {message}" if message else reason
        return self

    @property
    def decided(self) -> bool:
        """True once the item is in a final crawl state and later stages must skip it."""
        return self.status in (DUPLICATE, REJECTED, FAILED)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text that encodes as UTF-8: a non-UTF-8 file name (kept in ``path`` with
        surrogateescape) is written as ``\\udcXX`` escapes, which ``from_json`` reads back."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoItem:
        """Build from a dict, ignoring unknown keys (a newer producer may add fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json(cls, text: str | bytes) -> VideoItem:
        return cls.from_dict(json.loads(text))
