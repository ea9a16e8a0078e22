"""The item contract, the Redis connection (machine Redis and embedded) and the ledger."""

import redis

from crawler.connection import ProjectRedis, ensure_embedded, redis_url, stop_embedded
from crawler.items import VideoItem
from crawler.ledger import Ledger


def test_item_round_trips_through_json_and_ignores_unknown_keys():
    item = VideoItem(url="https://example.org/a.mp4", source="web", title="A", tags=["x"])
    item.fail("probe", "timeout", "ffprobe took 61 s")
    data = item.to_dict() | {"field_from_the_future": 1}
    back = VideoItem.from_dict(data)
    assert back == item
    assert VideoItem.from_json(item.to_json()) == item
    assert back.errors == {"probe": "timeout: ffprobe took 61 s"} and back.status == "failed"


def test_embedded_server_is_shared_and_persists(data_dir, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = redis_url()
    assert url == ensure_embedded(data_dir)  # a second caller finds the running server
    redis.Redis.from_url(url).set("kept", "yes")
    assert stop_embedded(data_dir)
    url2 = ensure_embedded(data_dir)  # restarted from its append-only file
    try:
        assert redis.Redis.from_url(url2).get("kept") == b"yes"
    finally:
        stop_embedded(data_dir)


def test_scrapy_redis_client_follows_redis_url(redis_url):
    client = ProjectRedis(host="ignored", port=1, socket_timeout=5)
    client.set("probe-key", 1)
    assert redis.Redis.from_url(redis_url).get("probe-key") == b"1"


def test_ledger_moves_counts_between_states(redis_client, key_prefix):
    ledger = Ledger(redis_client)
    ledger.record("u1", "queued", video_id="v1")
    ledger.record("u2", "queued", video_id="v2")
    ledger.record("u3", "rejected", stage="probe", error="not_a_video")
    ledger.record("u1", "indexed", video_id="v1")
    assert ledger.counts() == {"queued": 1, "indexed": 1, "rejected": 1}
    assert ledger.get("u3")["error"] == "not_a_video"
    assert dict(ledger.entries("queued")).keys() == {"u2"}
