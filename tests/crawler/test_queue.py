"""Leases and pending claims (crawler/queue.py) on a real Redis: popped is leased, never lost."""

import json
import re
import subprocess
import time

import pytest
import redis

from crawler.keys import RedisKeys
from crawler.queue import Leases, Owners, Sightings
from tests.conftest import PYTHON, ROOT, project_env


def test_a_popped_member_is_leased_until_acked_or_its_lease_lapses(redis_client):
    redis_client.zadd("q", {b"low": 5, b"high": -3})
    leases = Leases(redis_client, "q", "zset", owner="a", ttl=0.3)
    lease_id, data, score = leases.pop()
    assert (data, score) == (b"high", -3.0)  # scrapy-redis order: lowest score (highest priority) first
    assert redis_client.zrange("q", 0, -1) == [b"low"]
    assert leases.outstanding() == 1 and leases.reap() == 0  # not expired yet
    time.sleep(0.4)
    assert leases.reap() == 1  # lapsed (its process stopped renewing): back with its score
    assert redis_client.zrange("q", 0, -1, withscores=True) == [(b"high", -3.0), (b"low", 5.0)]
    lease_id, data, _ = leases.pop()
    leases.renew()
    time.sleep(0.2)
    leases.renew()  # the heartbeat keeps it
    time.sleep(0.2)
    assert leases.reap() == 0
    leases.ack([lease_id])
    assert leases.outstanding() == 0 and not redis_client.exists(RedisKeys.leased_data("q"))
    assert redis_client.zrange("q", 0, -1) == [b"low"]


def test_a_pop_retried_after_a_lost_reply_returns_the_same_member(redis_client):
    redis_client.zadd("q", {b"one": 0, b"two": 1})
    leases = Leases(redis_client, "q", "zset", owner="a", ttl=5)
    first = leases._pop(keys=leases._keys(), args=["a:1", 5000])
    again = leases._pop(keys=leases._keys(), args=["a:1", 5000])  # the same call sent twice
    assert first == again == b"0\none"
    assert redis_client.zrange("q", 0, -1) == [b"two"] and leases.outstanding() == 1


def test_start_payloads_are_leased_from_the_list_and_given_back_to_its_head(redis_client):
    redis_client.rpush("web:start_urls", "p1", "p2", "p3")
    leases = Leases(redis_client, "web:start_urls", "list", owner="a", ttl=5)
    taken = leases.take(2)
    assert [data for _, data in taken] == [b"p1", b"p2"]
    assert redis_client.lrange("web:start_urls", 0, -1) == [b"p3"]
    leases.ack([taken[0][0]])
    assert leases.give_back(list(leases.held)) == 1  # p2 was not done: the next pop takes it
    assert redis_client.lrange("web:start_urls", 0, -1) == [b"p2", b"p3"]
    assert leases.outstanding() == 0


def test_a_sighting_is_pending_until_recorded_and_free_again_when_its_owner_is_gone(redis_client, key_prefix):
    keys = RedisKeys(key_prefix)
    owners = Owners(redis_client, keys)
    owners.beat("a", 0.3)
    owners.beat("b", 30)
    a = Sightings(redis_client, "web", keys, owner="a")
    b = Sightings(redis_client, "web", keys, owner="b")
    assert a.first(["u1", "u2", "u1"]) == [True, True, False]  # the same URL twice: once
    assert b.first(["u1", "u2"]) == [False, False]  # a is alive: its sightings hold
    a.settle("u1", recorded=True)  # u1's item is in the ledger: final, like the dupefilter
    assert redis_client.smembers(RedisKeys.videos_seen("web")) == {b"u1"}
    time.sleep(0.4)  # a stops beating (killed): u2 was seen but never recorded
    assert b.first(["u1", "u2"]) == [False, True]
    b.settle("u2", recorded=False)  # its item did not reach the ledger: found again next time
    assert b.first(["u2"]) == [True]
    assert redis_client.hlen(RedisKeys.videos_pending("web")) == 1


def test_a_stale_sighting_whose_item_was_recorded_is_final(redis_client, key_prefix):
    keys = RedisKeys(key_prefix)
    Owners(redis_client, keys).beat("a", 0.2)
    Sightings(redis_client, "web", keys, owner="a").first(["u1"])
    redis_client.hset(keys.ledger, "u1", json.dumps({"status": "queued"}))  # recorded, then killed
    time.sleep(0.3)
    assert Sightings(redis_client, "web", keys, owner="b").first(["u1"]) == [False]
    assert redis_client.sismember(RedisKeys.videos_seen("web"), "u1")
    # a retry's placeholder ("new") is no record: that sighting is taken over
    Sightings(redis_client, "web", keys, owner="a").first(["u2"])
    redis_client.hset(keys.ledger, "u2", json.dumps({"status": "new"}))
    time.sleep(0.3)
    assert Sightings(redis_client, "web", keys, owner="b").first(["u2"]) == [True]


@pytest.mark.slow
def test_a_spider_closed_early_hands_its_leases_back(tmp_path, site, redis_url, key_prefix):
    """CLOSESPIDER_PAGECOUNT stops a crawl with requests in flight: they go back to the queue,
    nothing stays leased, and the next run takes them."""
    client = redis.Redis.from_url(redis_url)
    base = site.rstrip("/")
    log = tmp_path / "web.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", "web", "-a", f"url={base}/gen/0.html?n=40", "-a", "depth=5",
           "-s", "ITEM_PIPELINES={}", "-s", "CLOSESPIDER_PAGECOUNT=3", "-s", "CONCURRENT_REQUESTS=4",
           "-s", f"LOG_FILE={log}", "-s", "TELNETCONSOLE_ENABLED=0"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=project_env(REDIS_URL=redis_url), timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    queue = RedisKeys.requests("web")
    assert client.zcard(RedisKeys.leased(queue)) == 0
    assert not client.exists(RedisKeys.leased_data(queue))
    assert client.zcard(queue) > 0  # the rest of the crawl waits in the queue
    text = log.read_text()
    assert "Traceback" not in text
    stats = {k: int(v) for k, v in re.findall(r"'scheduler/leases/(\w+)': (\d+)", text)}
    assert stats.get("acked", 0) >= 1 and stats.get("handed_back_on_close", 0) >= 1, stats


class LosingHandoffPipeline:
    """Stands in for a hand-off whose ledger writes fail: items pass, none is recorded."""

    async def process_item(self, item):
        return item


@pytest.mark.slow
def test_a_request_whose_items_were_not_recorded_is_handed_back_then_given_up(tmp_path, site, redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    log = tmp_path / "web.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", "web", "-a", f"url={site.rstrip('/')}/gen/0.html?n=1",
           "-s", "ITEM_PIPELINES={\"tests.crawler.test_queue.LosingHandoffPipeline\": 100}",
           "-s", "CRAWL_MAX_ATTEMPTS=2", "-s", f"LOG_FILE={log}", "-s", "TELNETCONSOLE_ENABLED=0"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=project_env(REDIS_URL=redis_url), timeout=120,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = log.read_text()
    assert "could not be recorded 2 times; giving up" in text
    stats = dict(re.findall(r"'(scheduler/leases/\w+|spiders/web/items_unrecorded)': (\d+)", text))
    assert stats == {"scheduler/leases/handed_back": "1", "scheduler/leases/given_up": "1",
                     "spiders/web/items_unrecorded": "2"}, stats  # fmt: skip
    assert client.scard(RedisKeys.videos_seen("web")) == 0  # never recorded: never "seen"
    assert client.hlen(RedisKeys.videos_pending("web")) == 0
    queue = RedisKeys.requests("web")
    assert client.zcard(queue) == 0 and client.zcard(RedisKeys.leased(queue)) == 0
