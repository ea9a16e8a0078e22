"""Every URL's latest state in Redis, with live counts per state, shared by crawl and workers.

Keys (``RedisKeys.ledger`` / ``ledger_counts``): ``<prefix>:ledger`` hashes a video's URL to a
JSON record ``{"status", "video_id", "stage", "error", "source", "page_url", "at"}`` (``page_url``:
where the video was found, so ``retry`` can send a failed download back through its spider); ``<prefix>:ledger:counts``
holds one counter per state, kept exact by a Lua script that moves a URL from its old
state's counter to the new one atomically, whatever process writes.
"""

from __future__ import annotations

import json

import redis

import settings
from crawler.items import VideoItem, utcnow
from crawler.keys import RedisKeys

# Move URL ARGV[1] to state ARGV[2] with record ARGV[3]: the old state's counter down, the new one up.
_MOVE = """
if old then
  local status = cjson.decode(old)['status']
  if status then redis.call('HINCRBY', KEYS[2], status, -1) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""
_RECORD = "local old = redis.call('HGET', KEYS[1], ARGV[1])" + _MOVE + "return old"
# The crawl's hand-off in one round trip: XADD the item to the workers' stream (when ARGV[4] is
# not empty; a failing XADD stops the script before anything is written), then record its state
# as _RECORD does, unless ARGV[6] is "1" and the URL has a state already (kept: returns 0).
_HANDOFF = """
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'item', ARGV[4])
end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and ARGV[6] == '1' then return 0 end""" + _MOVE + "return 1"


class Ledger:
    """Records final states by URL and answers counts (``python -m processing status``)."""

    def __init__(self, client: redis.Redis, prefix: RedisKeys | str | None = None):
        """``prefix``: the keys (a ``RedisKeys`` or its prefix); None: ``settings.KEY_PREFIX``."""
        keys = prefix if isinstance(prefix, RedisKeys) else RedisKeys(prefix or settings.KEY_PREFIX)
        self.client = client
        self.key = keys.ledger
        self.counts_key = keys.ledger_counts
        self._record = client.register_script(_RECORD)
        self._handoff = client.register_script(_HANDOFF)

    def record(
        self,
        url: str,
        status: str,
        *,
        video_id: str | None = None,
        stage: str | None = None,
        error: str | None = None,
        source: str | None = None,
        page_url: str | None = None,
    ) -> None:
        self._record(keys=[self.key, self.counts_key],
                     args=[url, status, self._entry(status, video_id, stage, error, source, page_url)])  # fmt: skip

    @staticmethod
    def _entry(status, video_id=None, stage=None, error=None, source=None, page_url=None) -> str:
        entry = {"status": status, "video_id": video_id, "stage": stage, "error": error,
                 "source": source, "at": utcnow()}  # fmt: skip
        if page_url:
            entry["page_url"] = page_url
        return json.dumps(entry)

    @classmethod
    def _item_entry(cls, item: VideoItem) -> str:
        """An item's record: its status; for failures/rejections the deciding (last) error."""
        stage, error = list(item.errors.items())[-1] if item.errors else (None, None)
        if item.status not in ("failed", "rejected"):
            stage, error = None, None
        return cls._entry(item.status, item.video_id, stage, error, item.source, item.page_url)

    def record_item(self, item: VideoItem) -> None:
        """Record an item's current status; for failures/rejections the deciding (last) error."""
        self.record_many([item])

    def record_many(self, records) -> None:
        """Record several states in one round trip: each a ``VideoItem`` (as ``record_item``) or a
        ``(url, status, fields)`` tuple (``fields``: ``record``'s keyword arguments)."""
        pipe = self.client.pipeline(transaction=False)
        for r in records:
            if isinstance(r, VideoItem):
                url, status, entry = r.url, r.status, self._item_entry(r)
            else:
                url, status, fields = r
                entry = self._entry(status, **fields)
            self._record(keys=[self.key, self.counts_key], args=[url, status, entry], client=pipe)
        pipe.execute()

    def hand_off(self, item: VideoItem, stream: str, maxlen: int, entry: str | None, keep_existing: bool) -> bool:
        """XADD ``entry`` to ``stream`` (when given) and record the item, atomically, in one round trip.

        False when ``keep_existing`` and the URL has a state already (then nothing is recorded).
        A failing XADD (``redis.RedisError``) leaves the ledger as it was.
        """
        args = [item.url, item.status, self._item_entry(item), entry or "", maxlen, "1" if keep_existing else "0"]
        return bool(self._handoff(keys=[self.key, self.counts_key, stream], args=args))

    def get(self, url: str) -> dict | None:
        raw = self.client.hget(self.key, url)
        return json.loads(raw) if raw else None

    def counts(self) -> dict[str, int]:
        raw = self.client.hgetall(self.counts_key)
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items() if int(v)}

    def entries(self, status: str | None = None):
        """Yield ``(url, record)`` pairs, optionally only those in ``status``."""
        for url, raw in self.client.hscan_iter(self.key, count=1000):
            entry = json.loads(raw)
            if status is None or entry.get("status") == status:
                yield (url.decode() if isinstance(url, bytes) else url), entry
