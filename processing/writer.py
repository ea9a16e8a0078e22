"""The end of a batch: documents into the catalogue, other videos' updates, the ledger, rates."""

from __future__ import annotations

import logging

import redis

from crawler.items import INDEXED, NEW, QUEUED, utcnow
from crawler.ledger import Ledger
from processing.catalogue import Catalogue, Document
from processing.progress import RateBook
from processing.stages.base import Work

log = logging.getLogger(__name__)


def to_document(work: Work) -> Document:
    """A finished work as a catalogue document (item fields + ``vector`` when embedded)."""
    item = work.item
    if item.status in (NEW, QUEUED):
        item.status = INDEXED
    item.processed_at = utcnow()
    doc = item.to_dict()
    if work.descriptor is not None:
        doc["vector"] = [round(float(x), 6) for x in work.descriptor.ravel()]
    return doc


class CatalogueWriter:
    """Writes a batch's documents (idempotent by video_id), then records them in the ledger.

    ``write`` returns counts by final state. It raises only when the catalogue or Redis
    does; then nothing of the batch may be acknowledged (the runner retries it).
    """

    def __init__(self, catalogue: Catalogue, client: redis.Redis):
        self.catalogue = catalogue
        self.ledger = Ledger(client)
        self.rates = RateBook(client)

    def write(self, works: list[Work]) -> dict[str, int]:
        by_id = {w.item.video_id: w for w in works}  # a video twice in one batch: written once
        updates = [u for w in works for u in w.updates if u.get("video_id")]
        pending = []
        for u in updates:  # other videos decided here, e.g. a kept video now a duplicate
            target = by_id.get(u["video_id"])
            if target is None:
                pending.append(u)
                continue
            for key, value in u.items():  # the other video is in this very batch
                if hasattr(target.item, key):
                    setattr(target.item, key, value)
        docs = list({d["video_id"]: d for d in map(to_document, works)}.values())
        others: list[Document] = []
        for u in pending:
            old = self.catalogue.get(u["video_id"])
            if old is None:
                log.warning("update for unknown video %s ignored", u["video_id"])
                continue
            others.append(old | u)
        self.catalogue.upsert(docs + others)
        counts: dict[str, int] = {}
        for w in works:  # every URL gets its state, even two URLs of one video
            self.ledger.record_item(w.item)
            counts[w.item.status] = counts.get(w.item.status, 0) + 1
        for doc in others:
            if doc.get("url"):
                self.ledger.record(doc["url"], doc["status"], video_id=doc["video_id"],
                                   source=doc.get("source"))  # fmt: skip
        self.rates.add(counts)
        return counts
