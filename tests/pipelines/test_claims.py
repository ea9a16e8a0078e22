"""The Redis claims behind download and exact dedup: one winner per URL, platform id and digest."""

import time

from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.queue import Owners
from pipelines.claims import SeenIndex, Sha256Index


def test_a_url_or_platform_id_is_claimed_once_until_released(redis_client, key_prefix):
    seen = SeenIndex(redis_client, RedisKeys(key_prefix))
    first = VideoItem(url="https://e.org/a", source="t", platform_id="Yt:1")
    assert seen.claim(first) == (True, None)
    same_video = VideoItem(url="https://e.org/other-page", source="t", platform_id="Yt:1")
    assert seen.claim(same_video) == (False, None)  # claimed, no video id known yet
    seen.resolve(first, "v1")
    assert seen.claim(same_video) == (False, "v1")
    assert not redis_client.hexists(RedisKeys(key_prefix).seen, "url:https://e.org/other-page")
    seen.release(first)  # a failed download gives its claim up
    assert seen.claim(same_video) == (True, None)


def test_the_first_url_of_a_digest_owns_it(redis_client, key_prefix):
    digests = Sha256Index(redis_client, RedisKeys(key_prefix))
    assert digests.claim("d1", "https://e.org/a") == "new"
    assert digests.claim("d1", "https://e.org/a") == "same_url"  # a resumed crawl
    assert digests.claim("d1", "https://e.org/b") == "duplicate"
    assert digests.claim("d2", "https://e.org/b") == "new"


def test_a_claim_of_a_killed_process_is_taken_over_until_an_item_is_recorded(redis_client, key_prefix):
    keys = RedisKeys(key_prefix)
    Owners(redis_client, keys).beat("a", 0.3)
    a, b, c = (SeenIndex(redis_client, keys, owner=name) for name in "abc")
    item = VideoItem(url="https://e.org/v", source="t", platform_id="Yt:2")
    assert a.claim(item) == (True, None)
    a.resolve(item, "v2")
    assert b.claim(item) == (False, "v2")  # a is alive, its item in flight
    time.sleep(0.4)  # a stops beating (killed) before its item reached the ledger
    assert b.claim(item) == (True, None)
    b.resolve(item, "v2")
    b.settle(item, recorded=True)  # through the pipelines and in the ledger: final
    assert redis_client.hget(keys.seen, "url:https://e.org/v") == b"v2"
    assert c.claim(item) == (False, "v2")
    a.settle(item, recorded=False)  # a late word from the old owner changes nothing
    assert c.claim(item) == (False, "v2")


def test_a_pending_claim_expires_and_an_unrecorded_item_frees_it(redis_client, key_prefix):
    keys = RedisKeys(key_prefix)
    item = VideoItem(url="https://e.org/w", source="t")
    short = SeenIndex(redis_client, keys, owner="a", ttl=0.2)  # no heartbeat at all: its expiry rules
    assert short.claim(item) == (True, None)
    other = SeenIndex(redis_client, keys, owner="b")
    assert other.claim(item) == (False, None)
    time.sleep(0.3)
    assert other.claim(item) == (True, None)
    other.settle(item, recorded=False)  # e.g. the ledger write failed: it must be downloaded again
    assert not redis_client.hexists(keys.seen, "url:https://e.org/w")


def test_a_stale_claim_whose_url_the_ledger_has_is_final(redis_client, key_prefix):
    keys = RedisKeys(key_prefix)
    Owners(redis_client, keys).beat("a", 0.2)
    item = VideoItem(url="https://e.org/r", source="t")
    SeenIndex(redis_client, keys, owner="a").claim(item)
    SeenIndex(redis_client, keys, owner="a").resolve(item, "v3")
    redis_client.hset(keys.ledger, item.url, '{"status": "queued"}')  # recorded, then killed
    time.sleep(0.3)
    assert SeenIndex(redis_client, keys, owner="b").claim(item) == (False, "v3")
    assert redis_client.hget(keys.seen, "url:https://e.org/r") == b"v3"


def test_settling_by_the_ledger_is_one_round_trip_for_sighting_and_claim(redis_client, key_prefix):
    """``"?"``: the scripts ask the ledger themselves (the spider's check and both settles in one trip)."""
    import json

    from crawler.queue import Sightings
    from crawler.scripts import pipelined

    keys = RedisKeys(key_prefix)
    claims, sightings = SeenIndex(redis_client, keys, owner="a"), Sightings(redis_client, "web", keys, owner="a")
    done, lost = (VideoItem(url=f"https://e.org/{n}", source="t") for n in ("done", "lost"))
    for item in (done, lost):
        assert sightings.first([item.url]) == [True] and claims.claim(item) == (True, None)
    claims.resolve(done, "v1")
    redis_client.hset(keys.ledger, done.url, json.dumps({"status": "queued"}))
    for item in (done, lost):
        calls = [sightings.settle_call(item.url, "?"), claims.settle_call(item, "?")]
        assert pipelined(redis_client, calls) == ([1, 1] if item is done else [0, 0])
    assert redis_client.hget(keys.seen, f"url:{done.url}") == b"v1"  # final, names its video
    assert not redis_client.hexists(keys.seen, f"url:{lost.url}")  # freed: found and fetched again
    assert redis_client.smembers(RedisKeys.videos_seen("web")) == {done.url.encode()}
