"""The work stream on a real Redis: group reads, reclaim, dead letters, retry."""

import json

from crawler.items import VideoItem
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.runtime.stream import WorkStream, retry_failed


def _item(n: int, **kw) -> VideoItem:
    return VideoItem(url=f"https://example.org/{n}.mp4", source="web", video_id=f"{n:064x}",
                     status="queued", **kw)


def _cfg(**kw) -> ProcessingConfig:
    return ProcessingConfig.from_settings(num_gpus=0, **kw)  # KEY_PREFIX: the test's own


def _queue(client, stream, item: VideoItem) -> str:
    Ledger(client, stream.keys).record_item(item)
    return client.xadd(stream.key, {"item": item.to_json()}).decode()


def _stream(client, name, **kw) -> WorkStream:
    return WorkStream.from_config(client, _cfg(**kw), consumer=name)


def test_entries_queued_before_the_group_exists_are_read_and_acked(redis_client, key_prefix):
    a = _stream(redis_client, "a")
    ids = [_queue(redis_client, a, _item(i)) for i in range(3)]  # before any worker started
    a.ensure_group()
    a.ensure_group()  # idempotent
    got = a.read(10)
    assert [d.entry_id for d in got] == ids
    assert [d.item.url for d in got] == [f"https://example.org/{i}.mp4" for i in range(3)]
    assert a.stats() | {"consumers": 0} == {"length": 3, "backlog": 0, "pending": 3,
                                            "dead": 0, "consumers": 0}
    a.ack(ids)
    assert a.pending_count() == 0 and a.read(10) == []


def test_entries_of_a_dead_consumer_are_reclaimed_by_another(redis_client, key_prefix):
    dead = _stream(redis_client, "dead", claim_idle_ms=50)
    dead.ensure_group()
    ids = [_queue(redis_client, dead, _item(i)) for i in range(2)]
    assert len(dead.read(10)) == 2  # ...and the process dies without acking
    alive = _stream(redis_client, "alive", claim_idle_ms=50)
    assert alive.read(10, block_ms=10) == []  # not idle long enough yet: nothing to take
    import time

    time.sleep(0.12)
    got = alive.reclaim(10, force=True)
    # abandoned by a dead worker: delivered twice, but no attempt failed
    assert [d.entry_id for d in got] == ids and all((d.attempt, d.delivered) == (1, 2) for d in got)
    alive.ack(ids)
    assert alive.pending_count() == 0


def test_kills_never_dead_letter_an_entry_only_real_failures_do(redis_client, key_prefix):
    import time

    workers = [_stream(redis_client, f"w{i}", claim_idle_ms=20, max_attempts=2) for i in range(6)]
    workers[0].ensure_group()
    entry = _queue(redis_client, workers[0], _item(1))
    assert [d.attempt for d in workers[0].read(1)] == [1]
    for w in workers[1:]:  # each worker takes it over from a dead one, then dies too
        time.sleep(0.04)
        (d,) = w.reclaim(10, force=True)
        assert (d.entry_id, d.attempt) == (entry, 1)
    assert d.delivered == 6 and redis_client.xlen(workers[0].dead_key) == 0
    last = workers[-1]
    last.note_error([entry], "batch_error: a failure shared by a whole batch", counted=False)
    assert [d.attempt for d in last.redeliver([entry])] == [1]  # not pinned on this entry
    last.note_error([entry], "batch_error: RuntimeError: boom")  # it failed alone: counted
    assert [d.attempt for d in last.redeliver([entry])] == [2]
    last.note_error([entry], "actor_died: it crashed its actor")
    assert last.redeliver([entry]) == []
    (dead,) = last.dead_entries()
    assert dead["reason"] == "max_attempts: 2 deliveries failed; last: actor_died: it crashed its actor"
    assert (dead["attempts"], dead["deliveries"]) == ("3", "9")
    assert not redis_client.exists(last.attempts_key, last.errors_key)


def test_an_entry_that_never_fails_but_is_never_acked_is_dead_lettered_as_abandoned(redis_client, key_prefix):
    s = WorkStream.from_config(redis_client, _cfg(max_attempts=1), consumer="w")
    s.max_deliveries = 3
    s.ensure_group()
    entry = _queue(redis_client, s, _item(1))
    s.read(1)
    assert len(s.redeliver([entry])) == len(s.redeliver([entry])) == 1  # delivered 2, 3 times
    assert s.redeliver([entry]) == []
    assert s.dead_entries()[0]["reason"].startswith("abandoned: delivered 3 times")


def test_poison_entries_go_to_the_dead_letter_stream_at_once(redis_client, key_prefix):
    s = _stream(redis_client, "w")
    s.ensure_group()
    redis_client.xadd(s.key, {"item": "{not json"})
    redis_client.xadd(s.key, {"item": json.dumps({"source": "web"})})
    redis_client.xadd(s.key, {"something": "else"})
    no_id = _item(7)
    no_id.video_id = None
    redis_client.xadd(s.key, {"item": no_id.to_json()})
    good = _queue(redis_client, s, _item(1))
    got = s.read(10)
    assert [d.entry_id for d in got] == [good]
    reasons = [e["reason"].split(":")[0] for e in reversed(s.dead_entries())]
    assert reasons == ["not_json", "missing_url", "missing_item", "missing_video_id"]
    assert s.pending_count() == 1  # only the good one is in progress
    # the poison entry with a URL is a recorded failure of that URL, not lost
    assert Ledger(redis_client, key_prefix).get(no_id.url)["status"] == "failed"


def test_an_entry_failing_max_attempts_times_is_dead_lettered_with_its_error(redis_client, key_prefix):
    s = _stream(redis_client, "w", max_attempts=2)
    s.ensure_group()
    entry = _queue(redis_client, s, _item(1))
    assert [d.attempt for d in s.read(1)] == [1]
    s.note_error([entry], "batch_error: RuntimeError: boom")
    assert [d.attempt for d in s.redeliver([entry])] == [2]
    s.note_error([entry], "batch_error: RuntimeError: boom again")
    assert s.redeliver([entry]) == []  # third delivery > max_attempts: dead
    (dead,) = s.dead_entries()
    assert dead["reason"].startswith("max_attempts: 2 deliveries failed")
    assert "boom again" in dead["reason"] and dead["entry_id"] == entry
    assert VideoItem.from_json(dead["item"]).url == "https://example.org/1.mp4"
    assert s.pending_count() == 0
    assert Ledger(redis_client, key_prefix).get("https://example.org/1.mp4")["error"] == "dead_letter: max_attempts"


def test_retry_requeues_failed_items_of_a_stage_once(redis_client, key_prefix, data_dir):
    s = _stream(redis_client, "w")
    s.ensure_group()
    cat = SqliteCatalogue(data_dir / "cat.sqlite")
    embed_failed = _item(1).fail("embed", "model_error", "cuda oom")
    embed_failed.errors["labels"] = "ocr_error"
    frames_failed = _item(2).fail("frames", "undecodable")
    cat.upsert([embed_failed.to_dict(), frames_failed.to_dict(), _item(3).to_dict() | {"status": "indexed"}])
    for it in (embed_failed, frames_failed):
        Ledger(redis_client, key_prefix).record_item(it)

    assert retry_failed(redis_client, cat, _cfg(), stage="embed") == {"requeued": 1, "skipped": 1, "dead": 0}
    (d,) = s.read(10)
    assert d.item.url == embed_failed.url and d.item.status == "queued"
    assert d.item.errors == {"labels": "ocr_error"}  # only the embed error is dropped
    assert Ledger(redis_client, key_prefix).get(embed_failed.url)["status"] == "queued"
    assert cat.get(embed_failed.video_id)["status"] == "queued"
    # a second retry does not queue it again; without --stage the other one goes back too
    assert retry_failed(redis_client, cat, _cfg())["requeued"] == 1
    (d2,) = s.read(10)
    assert d2.item.url == frames_failed.url and d2.item.errors == {}
    assert Ledger(redis_client, key_prefix).counts() == {"queued": 2}


def test_retry_dead_requeues_dead_letters_that_hold_an_item(redis_client, key_prefix, data_dir):
    s = _stream(redis_client, "w", max_attempts=1)
    s.ensure_group()
    _queue(redis_client, s, _item(1))
    redis_client.xadd(s.key, {"item": "garbage"})
    (d,) = s.read(10)
    s.note_error([d.entry_id], "batch_error: boom")
    assert s.redeliver([d.entry_id]) == []  # one failure: max_attempts reached
    assert redis_client.xlen(s.dead_key) == 2
    with SqliteCatalogue(data_dir / "cat.sqlite") as cat:
        assert retry_failed(redis_client, cat, _cfg(), dead=True)["dead"] == 1
    assert redis_client.xlen(s.dead_key) == 1  # the garbage stays, with its reason
    (again,) = s.read(10)
    assert again.item.url == "https://example.org/1.mp4" and "stream" not in again.item.errors


def test_a_slow_worker_keeps_its_entries_by_touching_them(redis_client, key_prefix):
    import time

    slow = _stream(redis_client, "slow", claim_idle_ms=100)
    slow.ensure_group()
    entry = _queue(redis_client, slow, _item(1))
    (d,) = slow.read(1)
    time.sleep(0.15)
    slow.touch([entry])  # still working on it
    other = _stream(redis_client, "other", claim_idle_ms=100)
    assert other.reclaim(10, force=True) == []
    time.sleep(0.15)  # stopped touching (it died): now it is reclaimed (a death is no failed attempt)
    assert [(x.attempt, x.delivered) for x in other.reclaim(10, force=True)] == [(1, 2)]


def test_every_key_the_stream_writes_is_under_the_prefix(redis_client, key_prefix):
    s = _stream(redis_client, "w", max_attempts=1)
    s.ensure_group()
    entry = _queue(redis_client, s, _item(1))
    s.read(10)
    s.note_error([entry], "batch_error: boom")
    s.redeliver([entry])  # over its attempts: dead-lettered, ledger updated
    keys = {k.decode() for k in redis_client.scan_iter("*")}
    expected = RedisKeys(key_prefix)
    assert keys == {expected.stream, expected.dead, expected.ledger, expected.ledger_counts}
