"""The work stream: consumer group reads, reclaim of dead consumers' entries, dead letters, retry.

The crawl XADDs ``{"item": <VideoItem JSON>}`` onto ``RedisKeys.stream``. Workers read it
through one consumer group (created from id 0 with MKSTREAM, so nothing queued before the
first worker is missed). An entry stays pending until ``ack()``, which the runner calls only
after the entry's document is in the catalogue. Entries that a consumer left pending longer
than ``claim_idle_ms`` (it died, or its batch failed) are taken over with XAUTOCLAIM.

Attempts are counted here, not by Redis: a delivery counts only when it failed with a real
error (``note_error``: a stage raised, an actor crashed on it), in the ``stream_attempts``
hash. A delivery abandoned by a dead worker (killed, OOM, machine gone) costs nothing, so kills
never dead-letter an entry. An entry whose failures pass ``max_attempts`` goes to the
dead-letter stream with its last error instead of being tried again; an entry delivered
``max_attempts + EXTRA_DELIVERIES`` times without ever being acked (it seems to take its
workers down with it) goes there as ``abandoned``. Entries that cannot be an item at all (not
JSON, no ``url``, no ``video_id``) are dead-lettered at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

import redis

from crawler.items import FAILED, QUEUED, VideoItem, utcnow
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from processing.config import ProcessingConfig

log = logging.getLogger(__name__)

ERROR_MAX_CHARS = 500  # what is kept of a raw error message in Redis
# Deliveries beyond ``max_attempts`` after which an entry is dead-lettered as ``abandoned``
# although it never failed for real: an entry that takes each worker down with it (a driver
# OOM...) must not loop for ever. A kill costs an entry one or two deliveries: this is far
# above what kills and restarts of a healthy fleet cost it.
EXTRA_DELIVERIES = 20


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def consumer_name() -> str:
    """A consumer name unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Delivery:
    """One stream entry handed to this consumer, parsed, with its attempt number."""

    entry_id: str
    item: VideoItem | None  # None for a poison entry
    raw: str  # the entry's "item" field as received (kept for the dead-letter stream)
    attempt: int = 1  # earlier deliveries that failed with a real error, plus this one
    poison: str | None = None  # "reason_code: message" when the entry cannot be processed
    delivered: int = 1  # times Redis has delivered it, this delivery included (kills too)


def parse_entry(entry_id, fields: dict | None, attempt: int = 1) -> Delivery:
    """Turn a raw stream entry into a Delivery; never raises (poison is recorded instead)."""
    entry_id = _text(entry_id)
    fields = {_text(k): v for k, v in (fields or {}).items()}
    raw = _text(fields.get("item", b""))
    if "item" not in fields:
        return Delivery(entry_id, None, raw, attempt, "missing_item: entry has no 'item' field")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return Delivery(entry_id, None, raw, attempt, f"not_json: {exc}")
    if not isinstance(data, dict):
        return Delivery(entry_id, None, raw, attempt, "not_an_object: item JSON is not an object")
    if not data.get("url") or not isinstance(data.get("url"), str):
        return Delivery(entry_id, None, raw, attempt, "missing_url: item has no url")
    try:
        item = VideoItem.from_dict(data)
    except TypeError as exc:  # a mandatory field missing
        return Delivery(entry_id, None, raw, attempt, f"bad_item: {exc}")
    if not item.video_id or not isinstance(item.video_id, str):
        return Delivery(entry_id, item, raw, attempt, "missing_video_id: item has no video_id")
    if not isinstance(item.errors, dict):
        item.errors = {}
    return Delivery(entry_id, item, raw, attempt)


class WorkStream:
    """A worker's handle on the stream: read, reclaim, ack, dead-letter, counts."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, *, max_attempts: int, claim_idle_ms: int,
                 consumer: str | None = None, max_deliveries: int | None = None):  # fmt: skip
        if max_attempts < 1 or claim_idle_ms < 1:
            raise ValueError("max_attempts and claim_idle_ms must be positive integers")
        max_deliveries = max_attempts + EXTRA_DELIVERIES if max_deliveries is None else max_deliveries
        if max_deliveries <= max_attempts:
            raise ValueError(f"max_deliveries must be above max_attempts ({max_attempts}), got {max_deliveries!r}")
        self.client = client
        self.keys = keys
        self.key, self.group, self.dead_key = keys.stream, keys.group, keys.dead
        self.errors_key = keys.stream_errors  # entry id -> last error of a failed delivery
        self.attempts_key = keys.stream_attempts  # entry id -> deliveries that failed for real
        self.consumer = consumer or consumer_name()
        self.max_attempts = max_attempts
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.ledger = Ledger(client, keys)
        self._claim_cursor = "0-0"
        self._last_claim = 0.0

    @classmethod
    def from_config(cls, client: redis.Redis, cfg: ProcessingConfig, consumer: str | None = None) -> WorkStream:
        return cls(client, cfg.keys, max_attempts=cfg.max_attempts, claim_idle_ms=cfg.claim_idle_ms,
                   consumer=consumer)  # fmt: skip

    # -- group ----------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (from id 0, creating the stream) unless it exists."""
        try:
            self.client.xgroup_create(self.key, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def leave(self) -> None:
        """Remove this consumer from the group if it holds no pending entry."""
        try:
            for c in self.client.xinfo_consumers(self.key, self.group):
                if _text(c["name"]) == self.consumer and int(c["pending"]) == 0:
                    self.client.xgroup_delconsumer(self.key, self.group, self.consumer)
        except redis.ResponseError:
            pass

    # -- reading --------------------------------------------------------------------------
    def read(self, count: int, block_ms: int | None = None) -> list[Delivery]:
        """Up to ``count`` deliveries: first entries reclaimed from dead consumers, then new ones.

        Entries that are poison or over their attempts are dead-lettered (and acked) here and
        not returned. ``block_ms`` blocks for new entries when nothing could be reclaimed.
        """
        out: list[Delivery] = []
        for d in self.reclaim(count):
            out.append(d)
        if len(out) < count:
            resp = self.client.xreadgroup(
                self.group, self.consumer, {self.key: ">"}, count=count - len(out),
                block=None if out or block_ms is None else block_ms,
            )  # fmt: skip
            for _stream, entries in resp or []:
                for entry_id, fields in entries:
                    out.append(parse_entry(entry_id, fields, 1))
        return self._screen(out)

    def reclaim(self, count: int, force: bool = False) -> list[Delivery]:
        """Take over entries pending longer than ``claim_idle_ms`` (XAUTOCLAIM).

        Runs at most every ``claim_idle_ms / 2`` (and at least every 5 s) unless ``force``.
        """
        now = time.monotonic()
        if not force and now - self._last_claim < min(self.claim_idle_ms / 2000, 5.0):
            return []
        self._last_claim = now
        resp = self.client.xautoclaim(self.key, self.group, self.consumer,
                                      min_idle_time=self.claim_idle_ms,
                                      start_id=self._claim_cursor, count=count)  # fmt: skip
        cursor, entries = _text(resp[0]), resp[1]
        self._claim_cursor = cursor  # "0-0" once the whole PEL was scanned
        out = self._parse_taken(entries)
        if out:
            log.info("reclaimed %d entries idle for over %d ms", len(out), self.claim_idle_ms)
        return out

    def redeliver(self, entry_ids: Iterable[str]) -> list[Delivery]:
        """Deliver own pending entries again now, e.g. after a failed batch; entries over
        their attempts are dead-lettered and not returned."""
        ids = list(entry_ids)
        if not ids:
            return []
        entries = self.client.xclaim(self.key, self.group, self.consumer, 0, ids)
        return self._screen(self._parse_taken(entries))

    def touch(self, entry_ids: Iterable[str]) -> None:
        """Reset the idle time of entries still being worked on (XCLAIM JUSTID: not even a
        delivery counted), so that no other worker reclaims a batch that is merely slow."""
        ids = list(entry_ids)
        if ids:
            self.client.xclaim(self.key, self.group, self.consumer, 0, ids, justid=True)

    def _parse_taken(self, entries) -> list[Delivery]:
        """Entries taken over (XAUTOCLAIM / XCLAIM) as Deliveries with their attempt number
        (real failures so far + 1) and Redis' delivery count, in two round trips."""
        live = []
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream meanwhile (Redis 6.2)
                self.ack([_text(entry_id)])
            else:
                live.append((_text(entry_id), fields))
        if not live:
            return []
        failures = self.client.hmget(self.attempts_key, [i for i, _ in live])
        pipe = self.client.pipeline(transaction=False)
        for entry_id, _ in live:
            pipe.xpending_range(self.key, self.group, min=entry_id, max=entry_id, count=1)
        pending = pipe.execute()
        out = []
        for (entry_id, fields), failed, rows in zip(live, failures, pending):
            d = parse_entry(entry_id, fields, int(failed or 0) + 1)
            d.delivered = int(rows[0]["times_delivered"]) if rows else 1
            out.append(d)
        return out

    def _screen(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Dead-letter poison entries, entries past ``max_attempts`` real failures and entries
        delivered ``max_deliveries`` times; return the rest."""
        keep = []
        for d in deliveries:
            if d.poison:
                self.dead_letter(d, d.poison)
            elif d.attempt > self.max_attempts:
                last = self.client.hget(self.errors_key, d.entry_id)
                reason = _text(last) if last else "unknown"
                self.dead_letter(d, f"max_attempts: {d.attempt - 1} deliveries failed; last: {reason}")
            elif d.delivered > self.max_deliveries:
                self.dead_letter(d, f"abandoned: delivered {d.delivered - 1} times, never acknowledged "
                                    "and never failing (does it take its workers down?)")  # fmt: skip
            else:
                keep.append(d)
        return keep

    # -- outcomes -------------------------------------------------------------------------
    def ack(self, entry_ids: Iterable[str]) -> None:
        ids = list(entry_ids)
        if ids:
            pipe = self.client.pipeline()
            pipe.xack(self.key, self.group, *ids)
            pipe.hdel(self.errors_key, *ids)
            pipe.hdel(self.attempts_key, *ids)
            pipe.execute()

    def note_error(self, entry_ids: Iterable[str], error: str, counted: bool = True) -> None:
        """Remember the error of a failed delivery (shown if the entry is dead-lettered) and,
        when ``counted``, count the delivery as a failed attempt of each entry. The runner
        counts only what it can pin on the entry: the failure of a batch of that entry alone."""
        ids = list(entry_ids)
        if ids:
            pipe = self.client.pipeline()
            pipe.hset(self.errors_key, mapping={i: error[:ERROR_MAX_CHARS] for i in ids})
            if counted:
                for i in ids:
                    pipe.hincrby(self.attempts_key, i, 1)
            pipe.execute()

    def dead_letter(self, d: Delivery, reason: str) -> None:
        """Move an entry to the dead-letter stream with its reason, and ack it here."""
        log.warning("dead-lettered %s: %s", d.entry_id, reason)
        pipe = self.client.pipeline()
        pipe.xadd(self.dead_key, {"item": d.raw, "entry_id": d.entry_id,
                                  "reason": reason[:ERROR_MAX_CHARS],
                                  "attempts": d.attempt, "deliveries": d.delivered,
                                  "consumer": self.consumer,
                                  "at": utcnow()})  # fmt: skip
        pipe.xack(self.key, self.group, d.entry_id)
        pipe.hdel(self.errors_key, d.entry_id)
        pipe.hdel(self.attempts_key, d.entry_id)
        pipe.execute()
        if d.item is not None:  # the URL's final state: failed at the stream, retryable
            code = reason.split(":", 1)[0]
            d.item.fail("stream", "dead_letter", reason)
            self.ledger.record(d.item.url, FAILED, video_id=d.item.video_id, stage="stream",
                               error=f"dead_letter: {code}", source=d.item.source)  # fmt: skip

    # -- counts ---------------------------------------------------------------------------
    def pending_count(self) -> int:
        """Entries delivered to some consumer and not acked yet (in progress)."""
        try:
            return int(self.client.xpending(self.key, self.group)["pending"])
        except redis.ResponseError:  # no stream or no group yet
            return 0

    def stats(self) -> dict:
        """length, backlog (not yet delivered), pending (in progress), dead, consumers."""
        out = {"length": self.client.xlen(self.key), "backlog": None, "pending": 0,
               "dead": self.client.xlen(self.dead_key), "consumers": 0}  # fmt: skip
        try:
            groups = self.client.xinfo_groups(self.key)
        except redis.ResponseError:  # no stream yet
            out["backlog"] = 0
            return out
        for g in groups:
            if _text(g["name"]) == self.group:
                out["pending"] = int(g["pending"])
                out["consumers"] = int(g["consumers"])
                lag = g.get("lag")
                out["backlog"] = int(lag) if lag is not None else self._backlog_slow(g)
                break
        else:
            out["backlog"] = out["length"]  # no worker has started yet: all of it is waiting
        return out

    def _backlog_slow(self, group: dict, cap: int = 100_000) -> int:
        """Count entries after the group's last delivered id (when Redis cannot give the lag)."""
        start, n = "(" + _text(group["last-delivered-id"]), 0
        while n < cap:
            batch = self.client.xrange(self.key, min=start, max="+", count=1000)
            if not batch:
                break
            n += len(batch)
            start = "(" + _text(batch[-1][0])
        return n

    def dead_entries(self, count: int = 100) -> list[dict]:
        """The newest dead-letter entries as dicts (entry id included as ``dead_id``)."""
        rows = self.client.xrevrange(self.dead_key, count=count)
        return [{"dead_id": _text(i)} | {_text(k): _text(v) for k, v in f.items()} for i, f in rows]


# -- retry (python -m processing retry) ---------------------------------------------------
def iter_failed_docs(catalogue, page: int = 500) -> Iterator[dict]:
    """Every failed document in the catalogue (collected first: retry changes their status)."""
    docs, offset = [], 0
    while True:
        rows = catalogue.list(status=FAILED, limit=page, offset=offset)
        docs.extend(rows)
        if len(rows) < page:
            break
        offset += page
    return iter(docs)


def requeue(client: redis.Redis, cfg: ProcessingConfig, item: VideoItem) -> str:
    """Put one item on the work stream and record it queued; returns the entry id."""
    item.status = QUEUED
    item.duplicate_of, item.similarity = None, None
    entry_id = client.xadd(cfg.keys.stream, {"item": item.to_json()}, maxlen=cfg.stream_maxlen,
                           approximate=True)  # fmt: skip
    Ledger(client, cfg.keys).record_item(item)
    return _text(entry_id)


def retry_failed(client: redis.Redis, catalogue, cfg: ProcessingConfig, stage: str | None = None,
                 dead: bool = False) -> dict[str, int]:  # fmt: skip
    """Put failed items back on the stream; returns counts ``{"requeued", "skipped", "dead"}``.

    Failed catalogue documents (only those whose ``errors`` name ``stage`` when it is given)
    are reset to queued, lose that stage's error (all errors without ``stage``) and are
    written back as queued so that a second ``retry`` does not queue them twice. With
    ``dead``, every dead-lettered entry that holds a valid item is requeued too (whatever
    ``stage``) and removed from the dead-letter stream; poison entries stay there.
    """
    counts = {"requeued": 0, "skipped": 0, "dead": 0}
    updated = []
    for doc in iter_failed_docs(catalogue):
        errors = doc.get("errors") or {}
        if stage and stage not in errors:
            counts["skipped"] += 1
            continue
        item = VideoItem.from_dict(doc)
        item.errors = {k: v for k, v in errors.items() if stage and k != stage}
        requeue(client, cfg, item)
        updated.append(doc | {"status": QUEUED, "errors": item.errors})
        counts["requeued"] += 1
    catalogue.upsert(updated)
    if dead:
        dead_key = cfg.keys.dead
        for entry_id, fields in client.xrange(dead_key):
            d = parse_entry(entry_id, fields)
            if d.item is None or not d.item.video_id:
                continue  # poison stays where it is, with its reason
            d.item.errors = {k: v for k, v in d.item.errors.items()
                             if k != "stream" and (stage is None or k != stage)}  # fmt: skip
            requeue(client, cfg, d.item)
            client.xdel(dead_key, entry_id)
            counts["dead"] += 1
    return counts
