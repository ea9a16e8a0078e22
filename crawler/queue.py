"""At-least-once crawl queue: scrapy-redis' keys, but what a spider pops is leased until it is done.

scrapy-redis pops a request (or a start payload) and forgets it: a killed spider loses what it
had popped. Here a pop moves it atomically (one Lua script) into ``<source>:leased`` (lease id
-> expiry, ms) and ``<source>:leased:data`` (lease id -> what was popped), owned by this process
(``process_owner()``). The scheduler's heartbeat renews this process's leases and its entry in
``<prefix>:owners``; a lease is acknowledged once Scrapy is done with its request (response,
callback, and the callback's items through the item pipelines); any live spider gives expired
leases back to their queue. ``<spider>:requests`` (sorted set), ``<spider>:dupefilter`` and
``<spider>:start_urls`` (list, ``lpush`` works as documented) keep their names and types.

Claims ("this video is being handled") have an owner and an expiry too: a claim is
``pending:<owner>:<expiry ms>:<token>[:<video id>]`` until its item is recorded in the ledger,
and a pending claim whose expiry passed or whose owner stopped beating may be claimed again, so
a crash never makes a URL skipped for ever. ``Sightings`` holds a spider's videos already yielded
(``<spider>:videos_seen``); ``pipelines.claims.SeenIndex`` the download claims.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
from typing import Any

import redis
from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler
from twisted.internet.task import LoopingCall

from crawler.keys import RedisKeys

logger = logging.getLogger(__name__)

LEASE_META = "lease"  # request.meta: the lease id of a popped request
UNRECORDED_META = "lease_unrecorded"  # request.meta: an item of it did not reach the ledger
ATTEMPTS_META = "lease_attempts"  # request.meta: times it was handed back for that

_owner: tuple[int, str] | None = None


def process_owner() -> str:
    """This process's owner id (``host/pid/random``; no ``:``), the same for every part of it."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        host = socket.gethostname().replace(":", "_").replace("/", "_") or "host"
        _owner = (os.getpid(), f"{host}/{os.getpid()}/{secrets.token_hex(3)}")
    return _owner[1]


# Lua helpers shared by every script that reads a claim.
CLAIM_LUA = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pending(v)  -- owner, expiry, token, video id of a pending claim; nil if final
  if not v then return nil end
  return string.match(v, '^pending:([^:]*):(%d+):([^:]*):?(.*)$')
end
local function recorded(ledger, url)  -- the ledger has a crawl state for url (not "new": a retry)
  local v = redis.call('HGET', ledger, url)
  if not v then return false end
  local ok, entry = pcall(cjson.decode, v)
  return ok and type(entry) == 'table' and entry['status'] ~= 'new'
end
local function stale(v, owners, now)  -- a pending claim that may be taken over
  local owner, expiry = pending(v)
  if not owner then return false end
  if tonumber(expiry) < now then return true end
  local beat = redis.call('ZSCORE', owners, owner)
  return beat and tonumber(beat) < now
end
"""


class Owners:
    """``<prefix>:owners``: when each crawl process's heartbeat lapses; lapsed means gone."""

    _BEAT = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)  -- gone for a day: forget
    """

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.owners
        self._beat = client.register_script(self._BEAT)

    def beat(self, owner: str, ttl: float) -> None:
        """``owner`` is alive for ``ttl`` more seconds."""
        self._beat(keys=[self.key], args=[owner, int(ttl * 1000)])

    def leave(self, owner: str) -> None:
        """``owner`` is gone now (a clean close): its pending claims are free at once."""
        self.client.zadd(self.key, {owner: 0})


class Leases:
    """What was popped from ``source`` (a sorted set or a list) and is not acknowledged yet.

    ``held`` maps this process's lease ids to the caller's object (the request); the heartbeat
    renews them. ``give_back`` and ``reap`` return popped data to ``source`` (a sorted set
    member with its old score; a list item to the head, where the next pop takes it).
    """

    _POP_ZSET = """
    local have = redis.call('HGET', KEYS[3], ARGV[1])
    if have then return have end  -- the same call, retried after a lost reply
    local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if #r == 0 then return false end
    redis.call('ZREM', KEYS[1], r[1])
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
    local v = r[2] .. '\\n' .. r[1]
    redis.call('HSET', KEYS[3], ARGV[1], v)
    return v
    """
    _TAKE_LIST = """
    local out = {}
    local i = 1
    while true do  -- the same call, retried after a lost reply: what it took
      local v = redis.call('HGET', KEYS[3], ARGV[1] .. '.' .. i)
      if not v then break end
      out[#out + 1] = ARGV[1] .. '.' .. i
      out[#out + 1] = v
      i = i + 1
    end
    if #out > 0 then return out end
    local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
    if #items == 0 then return out end
    redis.call('LTRIM', KEYS[1], #items, -1)
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    for j, v in ipairs(items) do
      local id = ARGV[1] .. '.' .. j
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
      redis.call('HSET', KEYS[3], id, v)
      out[#out + 1] = id
      out[#out + 1] = v
    end
    return out
    """
    _RENEW = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
    """
    _GIVE_BACK = """
    local ids = {}
    if ARGV[2] == 'expired' then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
    else
      for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
    end
    local n = 0
    for _, id in ipairs(ids) do
      local v = redis.call('HGET', KEYS[3], id)
      if v then
        if ARGV[1] == 'zset' then
          local cut = string.find(v, '\\n', 1, true)
          redis.call('ZADD', KEYS[1], string.sub(v, 1, cut - 1), string.sub(v, cut + 1))
        else
          redis.call('LPUSH', KEYS[1], v)
        end
        redis.call('HDEL', KEYS[3], id)
        n = n + 1
      end
      redis.call('ZREM', KEYS[2], id)
    end
    return n
    """

    def __init__(self, client: redis.Redis, source: str, kind: str, *, owner: str | None = None,
                 ttl: float = 60.0):  # fmt: skip
        if kind not in ("zset", "list"):
            raise ValueError(f"a lease source is a 'zset' or a 'list', got {kind!r}")
        if ttl <= 0:
            raise ValueError(f"CRAWL_LEASE_SECONDS must be a positive number of seconds, got {ttl}")
        self.client = client
        self.source, self.kind = source, kind
        self.zkey, self.hkey = RedisKeys.leased(source), RedisKeys.leased_data(source)
        self.owner = owner or process_owner()
        self.ttl_ms = int(ttl * 1000)
        self.held: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pop = client.register_script(self._POP_ZSET)
        self._take = client.register_script(self._TAKE_LIST)
        self._renew = client.register_script(self._RENEW)
        self._give_back = client.register_script(self._GIVE_BACK)

    def _keys(self) -> list[str]:
        return [self.source, self.zkey, self.hkey]

    def pop(self) -> tuple[str, bytes, float] | None:
        """Lease the first member of a sorted-set source: ``(lease id, member, score)``, or None."""
        lease_id = f"{self.owner}:{next(self._ids)}"
        raw = self._pop(keys=self._keys(), args=[lease_id, self.ttl_ms])
        if raw is None:
            return None
        score, _, data = raw.partition(b"\n")
        self.held[lease_id] = None
        return lease_id, data, float(score)

    def take(self, n: int) -> list[tuple[str, bytes]]:
        """Lease up to ``n`` items from the head of a list source: ``[(lease id, item)]``."""
        prefix = f"{self.owner}:{next(self._ids)}"
        raw = self._take(keys=self._keys(), args=[prefix, int(n), self.ttl_ms])
        taken = [(raw[i].decode(), raw[i + 1]) for i in range(0, len(raw), 2)]
        for lease_id, _ in taken:
            self.held[lease_id] = None
        return taken

    def ack(self, lease_ids) -> None:
        """Done with these: forget them."""
        lease_ids = list(lease_ids)
        if not lease_ids:
            return
        with self.client.pipeline() as pipe:
            pipe.zrem(self.zkey, *lease_ids)
            pipe.hdel(self.hkey, *lease_ids)
            pipe.execute()
        for lease_id in lease_ids:
            self.held.pop(lease_id, None)

    def requeue(self, lease_id: str, data: bytes, score: float) -> None:
        """Acknowledge ``lease_id`` and put ``data`` (a changed copy) back into the sorted-set source."""
        with self.client.pipeline() as pipe:  # MULTI/EXEC: both or neither
            pipe.zadd(self.source, {data: score})
            pipe.zrem(self.zkey, lease_id)
            pipe.hdel(self.hkey, lease_id)
            pipe.execute()
        self.held.pop(lease_id, None)

    def renew(self) -> None:
        """Push the expiry of every lease this process holds ``ttl`` into the future."""
        if self.held:
            self._renew(keys=[self.zkey], args=[self.ttl_ms, *self.held])

    def give_back(self, lease_ids) -> int:
        """Return these leases' data to the source now (this process will not finish them)."""
        lease_ids = list(lease_ids)
        if not lease_ids:
            return 0
        n = self._give_back(keys=self._keys(), args=[self.kind, "ids", *lease_ids])
        for lease_id in lease_ids:
            self.held.pop(lease_id, None)
        return int(n)

    def reap(self, limit: int = 100) -> int:
        """Return up to ``limit`` expired leases (any owner's) to the source; how many."""
        return int(self._give_back(keys=self._keys(), args=[self.kind, "expired", int(limit)]))

    def outstanding(self) -> int:
        """Leases of any process not acknowledged yet."""
        return int(self.client.zcard(self.zkey))

    def clear(self) -> None:
        self.client.delete(self.zkey, self.hkey)
        self.held.clear()


class Sightings:
    """Videos a spider has yielded (``<spider>:videos_seen``), each pending until the ledger has it.

    ``first(urls)`` claims each URL (``<spider>:videos_seen:pending``, owner and expiry); once its
    item is through the pipelines ``settle(url, recorded)`` makes it final (added to the set, so a
    later run skips it, like the dupefilter) or frees it. A pending claim whose owner is gone is
    taken over, unless the ledger recorded its item meanwhile (then it is final, and so is its
    download claim in ``<prefix>:seen``).
    """

    _FIRST = CLAIM_LUA + """
    if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
    local v = redis.call('HGET', KEYS[2], ARGV[1])
    local now = now_ms()
    if v then
      local _, _, token = pending(v)
      if token == ARGV[4] then return 1 end  -- this call, retried after a lost reply
      if not stale(v, KEYS[3], now) then return 0 end
      if recorded(KEYS[4], ARGV[1]) then  -- recorded before its process died
        redis.call('SADD', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[2], ARGV[1])
        local claim = redis.call('HGET', KEYS[5], 'url:' .. ARGV[1])  -- its download claim too
        if claim and stale(claim, KEYS[3], now) then
          local _, _, _, vid = pending(claim)
          redis.call('HSET', KEYS[5], 'url:' .. ARGV[1], vid)
        end
        return 0
      end
    end
    redis.call('HSET', KEYS[2], ARGV[1], 'pending:' .. ARGV[2] .. ':' .. (now + tonumber(ARGV[3])) .. ':' .. ARGV[4])
    return 1
    """
    _SETTLE = CLAIM_LUA + """
    local final = ARGV[3] == '1' or (ARGV[3] == '?' and recorded(KEYS[3], ARGV[1]))
    local owner = pending(redis.call('HGET', KEYS[2], ARGV[1]))
    if owner == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
    if final then redis.call('SADD', KEYS[1], ARGV[1]) end
    return final and 1 or 0
    """

    def __init__(self, client: redis.Redis, spider: str, keys: RedisKeys, *, owner: str | None = None,
                 ttl: float = 3600.0):  # fmt: skip
        self.client = client
        self.seen, self.pending = RedisKeys.videos_seen(spider), RedisKeys.videos_pending(spider)
        self.owners, self.ledger, self.claims = keys.owners, keys.ledger, keys.seen
        self.owner = owner or process_owner()
        self.ttl_ms = int(ttl * 1000)
        self._first = client.register_script(self._FIRST)
        self._settle = client.register_script(self._SETTLE)

    def first(self, urls: list[str]) -> list[bool]:
        """For each URL: True when no process has yielded it (or the one that did died before
        recording it); one round trip."""
        keys = [self.seen, self.pending, self.owners, self.ledger, self.claims]
        with self.client.pipeline(transaction=False) as pipe:
            for url in urls:
                self._first(keys=keys, args=[url, self.owner, self.ttl_ms, secrets.token_hex(6)], client=pipe)
            return [bool(n) for n in pipe.execute()]

    def settle(self, url: str, recorded: bool) -> None:
        """The item of ``url`` is through: final when ``recorded``, else free for a later sighting."""
        script, keys, args = self.settle_call(url, "1" if recorded else "0")
        script(keys=keys, args=args)

    def settle_call(self, url: str, recorded: str) -> tuple:
        """``settle`` as a script call for ``crawler.scripts.pipelined``; ``recorded`` is ``"1"``,
        ``"0"`` or ``"?"`` (final when the ledger has ``url``: checked by the server, the
        script answers 1 or 0)."""
        return self._settle, [self.seen, self.pending, self.ledger], [url, self.owner, recorded]

    def clear(self) -> None:
        self.client.delete(self.seen, self.pending)


class LeasedQueue(PriorityQueue):
    """scrapy-redis' priority queue (same key and order) whose pop leases the request."""

    _PUSH_NEW = """
    if ARGV[3] ~= '' and redis.call('SADD', KEYS[2], ARGV[3]) == 0 then return 0 end
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
    return 1
    """

    def __init__(self, server, spider, key, serializer=None):
        super().__init__(server, spider, key, serializer)
        ttl = spider.crawler.settings.getfloat("CRAWL_LEASE_SECONDS", 60.0)
        self.leases = Leases(server, self.key, "zset", ttl=ttl)
        self._push_new = server.register_script(self._PUSH_NEW)

    def pop(self, timeout=0):
        """Lease and return the next request (``pop_leased`` also gives its lease id)."""
        popped = self.pop_leased()
        return popped[1] if popped else None

    def pop_leased(self):
        """``(lease id, request)`` for the next request, or None when the queue is empty."""
        while True:
            taken = self.leases.pop()
            if taken is None:
                return None
            lease_id, data, _ = taken
            try:
                request = self._decode_request(data)
            except Exception:  # noqa: BLE001 - e.g. a callback the spider no longer has
                logger.exception("dropping a queued request that cannot be decoded")
                self.leases.ack([lease_id])
                continue
            request.meta[LEASE_META] = lease_id
            self.leases.held[lease_id] = request
            return lease_id, request

    def push_new(self, request, dupefilter_key: str | None, fingerprint: str | None) -> bool:
        """Push ``request`` unless ``fingerprint`` is in the dupefilter: both in one step, so a
        crash never leaves a fingerprint without its request. False when it was seen before."""
        data = self._encode_request(request)
        keys = [self.key, dupefilter_key or self.key]
        return bool(self._push_new(keys=keys, args=[-request.priority, data, fingerprint or ""]))

    def clear(self):
        super().clear()
        self.leases.clear()


class LeasingScheduler(Scheduler):
    """scrapy-redis' scheduler (same keys, dupefilter, ``SCHEDULER_PERSIST``), at least once.

    - ``next_request`` leases what it pops (``LeasedQueue``); a lease is acknowledged once
      Scrapy's engine is done with its request: the engine keeps every request it took from the
      scheduler in its slot until the response, the callback and the callback's items through
      the item pipelines are done (Scrapy has no signal for that moment, so the scheduler looks
      at that set on each call and every second). A request marked ``lease_unrecorded`` by the
      spider (an item that did not reach the ledger) is handed back instead, and tried
      ``CRAWL_MAX_ATTEMPTS`` times in all.
    - A heartbeat every ``CRAWL_LEASE_SECONDS / 3`` renews this process's leases (also the
      spider's ``start_leases``) and gives back every expired lease of any process.
    - ``enqueue_request`` checks the dupefilter and pushes in one script; while Redis is away past
      the clients' retry, requests wait in memory and no lease is acknowledged.
    - On close, everything still leased is handed back at once (after a clean finish there is
      nothing; after Ctrl-C or a close condition, what was in flight runs again next time).
    """

    @classmethod
    def from_crawler(cls, crawler):
        instance = super().from_crawler(crawler)
        s = crawler.settings
        instance.crawler = crawler
        instance.keys = RedisKeys.from_settings(s)
        instance.lease_seconds = s.getfloat("CRAWL_LEASE_SECONDS", 60.0)
        instance.max_attempts = s.getint("CRAWL_MAX_ATTEMPTS", 3)
        if instance.lease_seconds <= 0:
            raise ValueError(f"CRAWL_LEASE_SECONDS must be a positive number of seconds, got {instance.lease_seconds}")
        if instance.max_attempts < 1:
            raise ValueError(f"CRAWL_MAX_ATTEMPTS must be at least 1, got {instance.max_attempts}")
        return instance

    def open(self, spider):
        super().open(spider)
        if not isinstance(self.queue, LeasedQueue):
            raise ValueError(f"LeasingScheduler needs SCHEDULER_QUEUE_CLASS = crawler.queue.LeasedQueue "
                             f"(or a subclass), got {self.queue_cls!r}")  # fmt: skip
        self.owner = self.queue.leases.owner
        self.owners = Owners(self.server, self.keys)
        self.leases = [self.queue.leases]
        if getattr(spider, "start_leases", None) is not None:
            self.leases.append(spider.start_leases)
        self.unpushed: list = []
        self._beat()
        interval = self.lease_seconds / 3
        self._loops = [LoopingCall(self._beat), LoopingCall(self._settle_safely)]
        self._loops[0].start(interval, now=False)
        self._loops[1].start(min(1.0, interval), now=False)

    def count(self, what: str, n: int = 1) -> None:
        if self.stats and n:
            self.stats.inc_value(f"scheduler/leases/{what}", n)

    # -- heartbeat -----------------------------------------------------------------------------
    def _beat(self) -> None:
        try:
            self.owners.beat(self.owner, self.lease_seconds)
            for leases in self.leases:
                leases.renew()
                reaped = leases.reap()
                if reaped:
                    logger.info("gave %d expired lease(s) of %s back", reaped, leases.source)
                    self.count("reaped", reaped)
        except redis.RedisError:
            pass  # the outage is logged once by crawler.connection; the next beat tries again
        except Exception:  # noqa: BLE001 - a LoopingCall that raises stops for good
            logger.exception("lease heartbeat failed")

    def _settle_safely(self) -> None:
        try:
            self.settle()
        except redis.RedisError:
            pass
        except Exception:  # noqa: BLE001
            logger.exception("lease settling failed")

    # -- acknowledgements ------------------------------------------------------------------------
    def _in_flight(self, closing: bool = False):
        """The requests the engine took and has not finished; None while it closes (unless ``closing``)."""
        slot = getattr(self.crawler.engine, "_slot", None)
        if slot is None or (slot.closing is not None and not closing):
            return None
        return slot.inprogress

    def settle(self, closing: bool = False) -> None:
        """Acknowledge (or hand back) the leases of requests the engine is done with."""
        if self.unpushed and not self._push_unpushed():
            return  # nothing is acknowledged while its children may exist only in memory
        in_flight = self._in_flight(closing)
        leases = self.queue.leases
        if in_flight is None or not leases.held:
            return
        done = [(lid, req) for lid, req in leases.held.items() if req is not None and req not in in_flight]
        ok = [lid for lid, req in done if not req.meta.get(UNRECORDED_META)]
        leases.ack(ok)
        self.count("acked", len(ok))
        for lease_id, request in done:
            if request.meta.get(UNRECORDED_META):
                self._hand_back(lease_id, request)

    def _hand_back(self, lease_id: str, request) -> None:
        attempts = int(request.meta.get(ATTEMPTS_META, 0)) + 1
        if attempts >= self.max_attempts:
            logger.error("%s: its items could not be recorded %d times; giving up on it", request, attempts)
            self.queue.leases.ack([lease_id])
            self.count("given_up")
            return
        request.meta[ATTEMPTS_META] = attempts
        for key in (UNRECORDED_META, LEASE_META):
            request.meta.pop(key, None)
        self.queue.leases.requeue(lease_id, self.queue._encode_request(request), -request.priority)
        self.count("handed_back")

    # -- scrapy-redis' Scheduler ------------------------------------------------------------------
    def next_request(self):
        self._settle_safely()
        try:
            popped = self.queue.pop_leased()
        except redis.RedisError:
            return None
        if popped is None:
            return None
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return popped[1]

    def enqueue_request(self, request):
        atomic = hasattr(self.df, "request_fingerprint") and hasattr(self.df, "key")
        fingerprint = None
        if not request.dont_filter:
            if atomic:
                fingerprint = self.df.request_fingerprint(request)
            elif self.df.request_seen(request):
                self.df.log(request, self.spider)
                return False
        try:
            added = self.queue.push_new(request, self.df.key if atomic else None, fingerprint)
        except redis.RedisError:
            self.unpushed.append((request, fingerprint))
            self.count("unpushed")
            return True
        if not added:
            self.df.log(request, self.spider)
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        return True

    def _push_unpushed(self) -> bool:
        """Push the requests an outage kept in memory; True when none is left."""
        while self.unpushed:
            request, fingerprint = self.unpushed[0]
            try:
                self.queue.push_new(request, getattr(self.df, "key", None), fingerprint)
            except redis.RedisError:
                return False
            self.unpushed.pop(0)
        return True

    def has_pending_requests(self):
        try:
            return len(self) > 0 or bool(self.unpushed)
        except redis.RedisError:
            return bool(self.unpushed)

    def close(self, reason):
        for loop in getattr(self, "_loops", []):
            if loop.running:
                loop.stop()
        try:
            if hasattr(self, "unpushed"):
                self._push_unpushed()
                if reason == "finished":
                    self.settle(closing=True)
            for leases in getattr(self, "leases", []):
                n = leases.give_back(list(leases.held))
                if n:
                    logger.info("handed %d unfinished lease(s) of %s back", n, leases.source)
                    self.count("handed_back_on_close", n)
            if hasattr(self, "owners"):
                self.owners.leave(self.owner)
        except redis.RedisError as exc:
            logger.error("could not hand leases back (%s): they return when they expire", exc)
        if getattr(self, "unpushed", None):
            logger.error("%d request(s) could not be pushed to Redis and are lost", len(self.unpushed))
        return super().close(reason)
