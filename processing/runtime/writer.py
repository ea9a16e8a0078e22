"""The end of a batch: documents into the catalogue, demoted videos, the ledger, rates, stage totals.

Provenance (crawler/provenance.py): every document is written with ``copies``, the other places
its video was found, from its ``CopyBook`` entries. A byte-identical copy (an entry the crawl
queues still ``duplicate``) gets no document of its own: its canonical's document is written
again with it. A near-duplicate decided here (or a kept video demoted by a better copy) adds
itself and its own copies to its canonical's entries. A video forgotten by a takedown
(crawler/takedowns.py) while it was queued is not written: it is rejected ``opted_out: forgotten``.

Near-duplicate clusters (processing/stages/neardup.py): a work's ``updates`` re-point every
member of a cluster whose canonical changed, so ``duplicate_of`` always names the canonical;
an update that changes nothing is not written, and a video whose document is not written yet
is left to its own writer. The shared index is the source of truth (processing/runtime/index.py):
after each write the writer asks it where the batch's videos (and those it updated) stand now,
and rewrites every document that a decision of another driver changed meanwhile (until they
agree), so concurrent drivers end with the documents the index holds. A duplicate promoted to
canonical (rare) is written ``indexed`` and put back on the stream (``relabel``) to be labelled.
"""

from __future__ import annotations

import logging

import redis

from crawler.items import DUPLICATE, INDEXED, NEW, QUEUED, VideoItem, utcnow
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.licenses import license_id_of
from crawler.provenance import NEAR, CopyBook, is_exact_copy, merge_copies, provenance
from crawler.takedowns import FORGOTTEN, Tombstones
from processing.catalogue import Catalogue, Document
from processing.runtime.progress import RateBook, StageTotals
from processing.work import Demotion, Work, WorkBatch

log = logging.getLogger(__name__)

RECONCILE_ROUNDS = 3  # ask the index again after a rewrite, at most this often per batch


def _place(doc_or_fields: dict) -> tuple:
    """What the near-dup index decides of a document: status, duplicate_of, similarity."""
    return doc_or_fields.get("status"), doc_or_fields.get("duplicate_of"), doc_or_fields.get("similarity")


def _ledger_records(docs: list[Document]) -> list[tuple]:
    """The ledger records of rewritten documents (``Ledger.record_many``)."""
    return [(d["url"], d["status"], {"video_id": d["video_id"], "source": d.get("source")}) for d in docs if d.get("url")]


def to_document(work: Work) -> Document:
    """A finished work as a catalogue document (item fields + ``vector`` when embedded)."""
    item = work.item
    if item.status in (NEW, QUEUED):
        item.status = INDEXED
    item.processed_at = utcnow()
    item.license_id = item.license_id or license_id_of(item)
    doc = item.to_dict()
    if work.descriptor is not None:
        doc["vector"] = [round(float(x), 6) for x in work.descriptor.ravel()]
    return doc


class CatalogueWriter:
    """Writes a batch's documents (idempotent by video_id), then records them in Redis.

    ``write`` returns counts by final state. It raises only when the catalogue or Redis
    does; then nothing of the batch may be acknowledged (the runner retries it).
    """

    def __init__(self, catalogue: Catalogue, client: redis.Redis, keys: RedisKeys, index=None, relabel=None):
        self.catalogue = catalogue
        self.index = index  # the shared near-dup index (``states``), or None: no reconciling
        self.relabel = relabel  # callable(VideoItem): requeue a promoted duplicate, or None
        self.ledger = Ledger(client, keys)
        self.rates = RateBook(client, keys)
        self.stage_totals = StageTotals(client, keys)
        self.copies = CopyBook(client, keys)
        self.tombstones = Tombstones(client, keys)

    def write(self, batch: WorkBatch) -> dict[str, int]:
        works = batch.works
        forgotten = self.tombstones.forgotten_among(w.item.video_id for w in works)
        for w in works:
            if w.item.video_id in forgotten:
                w.item.reject("takedown", "opted_out", FORGOTTEN)
        copies = [w for w in works if is_exact_copy(w.item)]
        kept = [w for w in works if w.item.video_id not in forgotten and not is_exact_copy(w.item)]
        demoted = self._demote_in_batch(kept)
        docs = list({d["video_id"]: d for d in map(to_document, kept)}.values())  # one per video
        others = self._demoted_documents(demoted)
        self.catalogue.upsert(self._with_copies(docs + others, [w.item for w in copies], forgotten))
        counts: dict[str, int] = {}
        for w in works:
            if not is_exact_copy(w.item):  # a copy's entry is provenance; the crawl counted it
                counts[w.item.status] = counts.get(w.item.status, 0) + 1
        # every URL gets its state (even two URLs of one video), and so do demoted documents
        self.ledger.record_many([w.item for w in works] + _ledger_records(others))
        self.rates.add(counts)
        self.stage_totals.add(batch.stats)
        self._reconcile(kept, docs + others)
        return counts

    def _reconcile(self, works: list[Work], written: list[Document]) -> None:
        """Rewrite the documents whose place in a cluster the index changed since it decided."""
        if self.index is None:
            return
        requests: dict[str, set[str]] = {}
        for w in works:
            model = w.dedup_model or w.item.embedding_model
            if model and w.item.status in (INDEXED, DUPLICATE):
                requests.setdefault(model, set()).update([w.item.video_id, *(u.video_id for u in w.updates)])
        places = {d["video_id"]: _place(d) for d in written}
        for _ in range(RECONCILE_ROUNDS):
            truth = self.index.states({m: sorted(ids & places.keys()) for m, ids in requests.items()})
            stale = []
            for vid, state in truth.items():
                if state is None:
                    continue  # not registered (failed before the index, or forgotten)
                canon, similarity = state
                now = Demotion(vid, None, None) if canon == vid else Demotion(vid, canon, similarity)
                if _place(now.fields()) != places[vid]:
                    stale.append(now)
            if not stale:
                return
            docs = self._demoted_documents(stale)
            log.info("%d documents rewritten: another driver's decision changed them", len(docs))
            self.catalogue.upsert(docs)
            self.ledger.record_many(_ledger_records(docs))
            for doc in docs:
                places[doc["video_id"]] = _place(doc)

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

    def _with_copies(self, docs: list[Document], exact: list, forgotten: set[str]) -> list[Document]:
        """``docs`` (and the canonicals that gain a copy) with their ``copies``, the CopyBook updated."""
        by_id = {d["video_id"]: d for d in docs}
        # a byte copy of a video written earlier: rewrite that document (the crawl put the
        # copy's entry in the book; the canonical's own write merges it otherwise)
        for item in exact:
            vid = item.video_id
            if vid not in by_id and vid not in forgotten and (old := self.catalogue.get(vid)) is not None:
                by_id[vid] = old
        # near-duplicates (and demoted videos) join their canonical's places, with their own copies
        book: dict[str, list[dict]] = {}  # canonical id -> entries to add
        near = [d for d in by_id.values() if d.get("status") == DUPLICATE and d.get("duplicate_of")
                and d["duplicate_of"] != d["video_id"]]  # fmt: skip
        own = self.copies.many(d["video_id"] for d in near)
        for d in near:
            entries = [provenance(d, NEAR, similarity=d.get("similarity"))]
            entries += [e | {"video_id": e.get("video_id") or d["video_id"]} for e in own.get(d["video_id"], [])]
            book.setdefault(d["duplicate_of"], []).extend(entries)
        for canonical, entries in book.items():
            self.copies.add(canonical, entries)
            if canonical not in by_id and canonical not in forgotten:
                if (old := self.catalogue.get(canonical)) is not None:
                    by_id[canonical] = old
        known = self.copies.many(by_id)
        return [merge_copies(d, known.get(vid, [])) for vid, d in by_id.items()]

    def _demoted_documents(self, demoted: list[Demotion]) -> list[Document]:
        """Videos of earlier batches whose place changed: their documents, updated (the last
        update of a video wins; one that changes nothing is left out)."""
        docs = []
        for d in {d.video_id: d for d in demoted}.values():
            old = self.catalogue.get(d.video_id)
            if old is None:  # not written yet (another driver's batch): its writer reconciles it
                log.debug("update for %s before its document: left to its own writer", d.video_id)
                continue
            fields = d.fields()
            if _place(old) == _place(fields):
                continue
            if d.promoted and old.get("status") == DUPLICATE and self.relabel is not None:
                self.relabel(VideoItem.from_dict(old))  # a duplicate was never labelled
            docs.append(old | fields)
        return docs
