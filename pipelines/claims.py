"""The Redis claims that make downloads and exact dedup hold across spider processes.

``SeenIndex`` (``<prefix>:seen``): the URL and platform id of every video claimed for
download, later pointed at its video id. A claim has an owner (the claiming process,
``crawler.queue.process_owner()``) and an expiry: it reads
``pending:<owner>:<expiry ms>:<token>[:<video id>]`` until the spider settles it once the item
is recorded in the ledger (then it is the video id, or ``""`` when none is known), and a
pending claim whose expiry passed or whose owner stopped its heartbeat may be claimed again
(unless the ledger has its URL: then it is final), so a killed spider never leaves a URL claimed
for ever. ``Sha256Index`` (``<prefix>:sha256``): the
first URL whose bytes had each digest. Both are shared by every spider process on one Redis.
"""

from __future__ import annotations

import secrets

import redis

import settings
from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.queue import CLAIM_LUA, process_owner


class SeenIndex:
    """URLs and platform ids claimed by any spider process: ``<prefix>:seen`` in Redis."""

    _CLAIM = CLAIM_LUA + """
    local now = now_ms()
    local blocked, vid = false, nil
    for i = 5, #ARGV do
      local v = redis.call('HGET', KEYS[1], ARGV[i])
      if v then
        local owner, _, token, pvid = pending(v)
        local url = string.match(ARGV[i], '^url:(.*)$')
        if owner and token ~= ARGV[3] and stale(v, KEYS[2], now) and url and recorded(KEYS[3], url) then
          redis.call('HSET', KEYS[1], ARGV[i], pvid)  -- recorded before its process died: final
          owner, v = nil, pvid
        end
        if owner then
          if token ~= ARGV[3] and not stale(v, KEYS[2], now) then
            blocked = true
            if not vid and pvid ~= '' then vid = pvid end
          end
        else
          blocked = true
          if not vid and v ~= '' then vid = v end
        end
      end
    end
    if blocked then return {0, vid or false} end
    local claim = 'pending:' .. ARGV[1] .. ':' .. (now + tonumber(ARGV[2])) .. ':' .. ARGV[3] .. ':' .. ARGV[4]
    for i = 5, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], claim) end
    return {1, false}
    """
    _RESOLVE = CLAIM_LUA + """
    for i = 2, #ARGV do
      local owner, expiry, token = pending(redis.call('HGET', KEYS[1], ARGV[i]))
      if owner then
        redis.call('HSET', KEYS[1], ARGV[i], 'pending:' .. owner .. ':' .. expiry .. ':' .. token .. ':' .. ARGV[1])
      else
        redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
      end
    end
    """
    _SETTLE = CLAIM_LUA + """
    local final = ARGV[2] == '1' or (ARGV[2] == '?' and recorded(KEYS[2], string.sub(ARGV[3], 5)))
    for i = 3, #ARGV do
      local owner, _, _, vid = pending(redis.call('HGET', KEYS[1], ARGV[i]))
      if owner == ARGV[1] then
        if final then redis.call('HSET', KEYS[1], ARGV[i], vid) else redis.call('HDEL', KEYS[1], ARGV[i]) end
      end
    end
    return final and 1 or 0
    """

    def __init__(self, client: redis.Redis, keys: RedisKeys, *, owner: str | None = None,
                 ttl: float | None = None):  # fmt: skip
        """``owner``: default this process; ``ttl``: seconds a claim lasts at most while pending
        (default ``CRAWL_CLAIM_SECONDS``)."""
        ttl = settings.CRAWL_CLAIM_SECONDS if ttl is None else ttl
        if ttl <= 0:
            raise ValueError(f"CRAWL_CLAIM_SECONDS must be a positive number of seconds, got {ttl}")
        self.client = client
        self.key = keys.seen
        self.owners, self.ledger = keys.owners, keys.ledger
        self.owner = owner or process_owner()
        self.ttl_ms = int(ttl * 1000)
        self._claim = client.register_script(self._CLAIM)
        self._resolve = client.register_script(self._RESOLVE)
        self._settle = client.register_script(self._SETTLE)

    @staticmethod
    def fields(item: VideoItem) -> list[str]:
        """The hash fields that name ``item``: ``url:<url>`` and, when known, ``pid:<platform id>``."""
        fields = [f"url:{item.url}"]
        if item.platform_id:
            fields.append(f"pid:{item.platform_id}")
        return fields

    def claim(self, item: VideoItem) -> tuple[bool, str | None]:
        """Claim all the item's fields or none; ``(False, video_id or None)`` when one is held
        (by a live owner) or final."""
        args = [self.owner, self.ttl_ms, secrets.token_hex(6), "", *self.fields(item)]
        won, video_id = self._claim(keys=[self.key, self.owners, self.ledger], args=args)
        if won:
            return True, None
        return False, video_id.decode() if isinstance(video_id, bytes) else video_id

    def release(self, item: VideoItem) -> None:
        """Give this process's claim up (a failed download), so that a retry may try again."""
        self.settle(item, recorded=False)

    def resolve(self, item: VideoItem, video_id: str) -> None:
        """Point the item's claims at its video id, so later finds name it (still pending if they were)."""
        self._resolve(keys=[self.key], args=[video_id, *self.fields(item)])

    def settle(self, item: VideoItem, recorded: bool) -> None:
        """The item is through the pipelines: this process's claims become final (``recorded``:
        the ledger has it) or are given up (it must be found and downloaded again)."""
        script, keys, args = self.settle_call(item, "1" if recorded else "0")
        script(keys=keys, args=args)

    def settle_call(self, item: VideoItem, recorded: str) -> tuple:
        """``settle`` as a script call for ``crawler.scripts.pipelined``; ``recorded`` is ``"1"``,
        ``"0"`` or ``"?"`` (final when the ledger has the item's URL: checked by the server, the
        script answers 1 or 0)."""
        return self._settle, [self.key, self.ledger], [self.owner, recorded, *self.fields(item)]


class Sha256Index:
    """The first URL of every sha256 digest: ``<prefix>:sha256`` in Redis."""

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.sha256

    def claim(self, digest: str, url: str) -> str:
        """``"new"`` for the first URL of ``digest`` (atomic), ``"same_url"`` when ``url`` is
        that URL again (a resumed crawl), else ``"duplicate"``."""
        if self.client.hsetnx(self.key, digest, url):
            return "new"
        first = self.client.hget(self.key, digest)
        if first is not None and first.decode() == url:
            return "same_url"
        return "duplicate"
