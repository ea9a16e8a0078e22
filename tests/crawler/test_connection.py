"""The project's Redis: REDIS_URL when set, else the embedded server, shared and persistent."""

import redis

from crawler.connection import ProjectRedis, answers, ensure_embedded, redis_url, stop_embedded


def test_embedded_server_is_shared_and_persists(data_dir, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = redis_url()
    assert url == ensure_embedded(data_dir)  # a second caller finds the running server
    redis.Redis.from_url(url).set("kept", "yes")
    assert stop_embedded(data_dir)
    assert not answers(url)
    url2 = ensure_embedded(data_dir)  # restarted from its append-only file
    try:
        assert redis.Redis.from_url(url2).get("kept") == b"yes"
    finally:
        stop_embedded(data_dir)


def test_scrapy_redis_client_follows_redis_url(redis_url):
    client = ProjectRedis(host="ignored", port=1, socket_timeout=5)
    client.set("probe-key", 1)
    assert redis.Redis.from_url(redis_url).get("probe-key") == b"1"
