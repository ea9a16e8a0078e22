"""The ledger: every URL's latest state, exact counts per state, under the test's key prefix."""

import pytest
import redis

from crawler.keys import RedisKeys
from crawler.ledger import Ledger


def test_ledger_moves_counts_between_states(redis_client, key_prefix):
    ledger = Ledger(redis_client)
    ledger.record("u1", "queued", video_id="v1")
    ledger.record("u2", "queued", video_id="v2")
    ledger.record("u3", "rejected", stage="probe", error="not_a_video")
    ledger.record("u1", "indexed", video_id="v1")
    assert ledger.counts() == {"queued": 1, "indexed": 1, "rejected": 1}
    assert ledger.get("u3")["error"] == "not_a_video"
    assert dict(ledger.entries("queued")).keys() == {"u2"}


def test_ledger_writes_only_under_its_prefix(redis_client, key_prefix):
    keys = RedisKeys("other")
    Ledger(redis_client, keys).record("u1", "queued")
    Ledger(redis_client, "other").record("u2", "failed", stage="probe", error="timeout")
    assert sorted(k.decode() for k in redis_client.keys("*")) == [keys.ledger, keys.ledger_counts]
    assert Ledger(redis_client, keys).counts() == {"queued": 1, "failed": 1}
    assert Ledger(redis_client).counts() == {}  # the test's own prefix (settings.KEY_PREFIX)


def test_hand_off_queues_and_records_in_one_script_and_a_failed_xadd_writes_nothing(redis_client, key_prefix):
    from crawler.items import VideoItem

    keys = RedisKeys(key_prefix)
    ledger = Ledger(redis_client, keys)
    item = VideoItem(url="u1", source="t", status="queued", video_id="v1")
    assert ledger.hand_off(item, keys.stream, 1000, item.to_json(), keep_existing=False)
    assert redis_client.xlen(keys.stream) == 1 and ledger.get("u1")["status"] == "queued"
    again = VideoItem(url="u1", source="t", status="duplicate", duplicate_of="v1")
    assert not ledger.hand_off(again, keys.stream, 1000, None, keep_existing=True)  # its first state kept
    assert ledger.counts() == {"queued": 1}
    redis_client.set("not-a-stream", "x")  # XADD to it fails (WRONGTYPE): nothing is recorded
    other = VideoItem(url="u2", source="t", status="queued", video_id="v2")
    with pytest.raises(redis.ResponseError):
        ledger.hand_off(other, "not-a-stream", 1000, other.to_json(), keep_existing=False)
    assert ledger.get("u2") is None and ledger.counts() == {"queued": 1}
