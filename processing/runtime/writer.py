"""The end of a batch: documents into the catalogue, demoted videos, the ledger, rates, stage totals."""

from __future__ import annotations

import logging

import redis

from crawler.items import INDEXED, NEW, QUEUED, utcnow
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from processing.catalogue import Catalogue, Document
from processing.runtime.progress import RateBook, StageTotals
from processing.work import Demotion, Work, WorkBatch

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
    """Writes a batch's documents (idempotent by video_id), then records them in Redis.

    ``write`` returns counts by final state. It raises only when the catalogue or Redis
    does; then nothing of the batch may be acknowledged (the runner retries it).
    """

    def __init__(self, catalogue: Catalogue, client: redis.Redis, keys: RedisKeys):
        self.catalogue = catalogue
        self.ledger = Ledger(client, keys)
        self.rates = RateBook(client, keys)
        self.stage_totals = StageTotals(client, keys)

    def write(self, batch: WorkBatch) -> dict[str, int]:
        works = batch.works
        demoted = self._demote_in_batch(works)
        docs = list({d["video_id"]: d for d in map(to_document, works)}.values())  # one per video
        others = self._demoted_documents(demoted)
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
        self.stage_totals.add(batch.stats)
        return counts

    @staticmethod
    def _demote_in_batch(works: list[Work]) -> list[Demotion]:
        """Apply demotions of videos in this very batch to their items; return the others."""
        by_id = {w.item.video_id: w for w in works}
        rest = []
        for d in (d for w in works for d in w.updates):
            target = by_id.get(d.video_id)
            if target is None:
                rest.append(d)
                continue
            for key, value in d.fields().items():
                setattr(target.item, key, value)
        return rest

    def _demoted_documents(self, demoted: list[Demotion]) -> list[Document]:
        """Kept videos of earlier batches, now duplicates: their documents, updated."""
        docs = []
        for d in demoted:
            old = self.catalogue.get(d.video_id)
            if old is None:
                log.warning("update for unknown video %s ignored", d.video_id)
                continue
            docs.append(old | d.fields())
        return docs
