"""The Ray worker pool end to end: real local Ray, real Redis, real clips decoded with PyAV.

The stages here are small stand-ins with the real Stage shape (the real ones load models):
TinyFrames decodes real frames with PyAV, TinyEmbed takes a colour histogram, TinyNearDup
keeps an in-memory list, TinyLabels counts frames. They are named as stand-ins on purpose.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from crawler.errors import MediaError
from crawler.items import VideoItem
from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.pipeline import STEPS
from processing.runtime.progress import project_status
from processing.runtime.runner import Runner
from processing.runtime.stream import WorkStream, retry_failed
from processing.stages.base import Resources, Stage
from tests.conftest import PYTHON, ROOT, project_env

HERE = "tests.processing.runtime.test_runner"
STAGES = {"frames": f"{HERE}:TinyFrames", "scenes": "processing.stages.scenes:ScenesStage",  # real, cheap
          "embed": f"{HERE}:TinyEmbed", "neardup": f"{HERE}:TinyNearDup", "labels": f"{HERE}:TinyLabels"}  # fmt: skip


class TinyFrames(Stage):
    """Stand-in FramesStage: the first 4 frames of the video, decoded with PyAV, 32x32."""

    name = "frames"
    resources = Resources(num_cpus=1)
    error_code = "undecodable"

    def process_batch(self, works):
        for w in works:
            if w.item.title == "raise":  # a bug that escapes a stage: the runtime must cope
                raise RuntimeError("stage bug on " + w.item.url)
            if w.item.title == "crash":  # the decoder takes its process down mid-batch
                os._exit(3)
        return super().process_batch(works)

    def process_one(self, work):
        import av

        with av.open(work.item.path) as c:
            frames = [f.to_ndarray(format="rgb24", width=32, height=32) for _, f in zip(range(4), c.decode(video=0))]
        if not frames:
            raise MediaError("no_frames", "no frames")
        work.frames = np.stack(frames)


class TinyEmbed(Stage):
    """Stand-in EmbedStage: an L2-normalised 8-bin colour histogram."""

    name = "embed"

    def process_one(self, work):
        hist = np.histogram(work.frames, bins=8, range=(0, 256))[0].astype("float32")
        work.descriptor = hist / np.linalg.norm(hist)
        work.item.embedding_model = "tiny-histogram"


class TinyNearDup(Stage):
    """Stand-in NearDupStage: a video whose descriptor equals an earlier one is a duplicate."""

    name = "neardup"

    def setup(self):
        self.seen: dict[str, np.ndarray] = {}

    def process_one(self, work):
        for vid, vec in self.seen.items():
            if vid != work.item.video_id and float(vec @ work.descriptor) > 0.99999:
                work.item.status, work.item.duplicate_of, work.item.similarity = "duplicate", vid, 1.0
                return "duplicate"
        self.seen[work.item.video_id] = work.descriptor
        return "kept"


class TinyLabels(Stage):
    """Stand-in LabelsStage: records how many frames it saw."""

    name = "labels"

    def process_one(self, work):
        work.item.labels["tiny"] = {"frames": int(len(work.frames))}




def _cfg(**kw) -> ProcessingConfig:
    kw = {"num_workers": 1, "model_workers": 1, "batch_size": 3, "num_gpus": 0,
          "block_ms": 100, "claim_idle_ms": 60_000, "stages": dict(STAGES)} | kw  # fmt: skip
    return ProcessingConfig.from_settings(**kw)  # KEY_PREFIX and DATA_DIR: the test's own


def _item(path, n=0, **kw) -> VideoItem:
    import hashlib

    vid = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else f"{n:064x}"
    return VideoItem(url=f"http://site.test/{path.name}", source="web", path=str(path),
                     video_id=vid, status="queued", **kw)


def _queue(client, item) -> str:
    keys = _cfg().keys
    Ledger(client, keys).record_item(item)
    return client.xadd(keys.stream, {"item": item.to_json()}).decode()


def _run(client, catalogue, **kw):
    runner_kw = {k: kw.pop(k) for k in ("consumer", "retry_delay_s") if k in kw}
    return Runner(_cfg(**kw), until_empty=True, client=client, catalogue=catalogue,
                  **runner_kw).run()  # fmt: skip


def test_work_indexes_clips_once_fails_corrupt_ones_and_retry_recovers(
        ray_session, redis_client, key_prefix, data_dir, media):  # fmt: skip
    clips = [media[n] for n in ("bikes", "gradio_a", "gradio_b", "carphone_pristine")]
    corrupt = data_dir / "corrupt.mp4"
    corrupt.write_bytes(clips[0].read_bytes()[:2000])  # truncated: header only
    empty = data_dir / "empty.mp4"
    empty.write_bytes(b"")
    items = [_item(p) for p in clips] + [_item(corrupt), _item(empty, 99)]
    for it in items:
        _queue(redis_client, it)
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")

    stats = _run(redis_client, cat)

    assert stats.by_status == {"indexed": 4, "failed": 2}
    for it in items[:4]:
        doc = cat.get(it.video_id)
        assert doc["status"] == "indexed" and doc["url"] == it.url
        assert doc["labels"]["tiny"]["frames"] == 4 and len(doc["vector"]) == 8
        assert doc["processed_at"] and doc["embedding_model"] == "tiny-histogram"
        assert doc["scenes"][0]["start"] == 0 and doc["models"]["scenes"].startswith("ffmpeg-scene")
    bad = cat.get(items[4].video_id)
    assert bad["status"] == "failed" and bad["errors"]["frames"].startswith("undecodable: ")
    assert cat.get(items[5].video_id)["errors"]["frames"].startswith("undecodable")
    ledger = Ledger(redis_client, key_prefix)
    assert ledger.counts() == {"indexed": 4, "failed": 2}
    assert ledger.get(items[4].url)["stage"] == "frames"
    stream = WorkStream.from_config(redis_client, _cfg(), consumer="check")
    assert stream.pending_count() == 0 and stream.stats()["backlog"] == 0
    # every stage's counters came with the batches to Redis: what `status` shows
    stages = project_status(redis_client, _cfg())["stages"]
    assert {k: v for k, v in stages["frames"].items() if "seconds" not in k} == {
        "ok": 4, "undecodable": 2, "videos": 6}
    assert stages["embed"]["ok"] == stages["labels"]["ok"] == 4
    assert (stages["neardup"]["kept"], stages["neardup"].get("duplicate", 0)) == (4, 0)

    # redelivery of a finished entry (e.g. a worker died after writing, before acking)
    _queue(redis_client, items[0])
    # the broken file is repaired; retry puts the failed frames items back on the stream
    shutil.copy(clips[1], corrupt)
    assert retry_failed(redis_client, cat, _cfg(), stage="frames")["requeued"] == 2
    assert ledger.counts() == {"indexed": 3, "queued": 3}

    stats = _run(redis_client, cat)

    assert stats.by_status == {"indexed": 2, "failed": 1}  # bikes again; corrupt now a good copy
    assert cat.counts() == {"indexed": 5, "failed": 1}  # bikes not written twice
    assert cat.get(items[4].video_id)["errors"] == {} and cat.get(items[4].video_id)["status"] == "indexed"
    assert ledger.counts() == {"indexed": 5, "failed": 1}


def test_entries_of_a_killed_worker_are_reclaimed_and_indexed_once(
        ray_session, redis_client, key_prefix, data_dir, media):  # fmt: skip
    items = [_item(media["gradio_a"]), _item(media["bikes"])]
    for it in items:
        _queue(redis_client, it)
    dead = WorkStream.from_config(redis_client, _cfg(claim_idle_ms=300), consumer="worker-a")
    dead.ensure_group()
    assert len(dead.read(10)) == 2  # worker A took both, then was killed before acking
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")

    stats = _run(redis_client, cat, consumer="worker-b", claim_idle_ms=300)

    assert stats.by_status == {"indexed": 2}
    assert cat.counts() == {"indexed": 2}
    assert dead.pending_count() == 0
    assert redis_client.xlen(dead.dead_key) == 0


def test_a_stage_that_raises_or_a_killed_actor_sinks_only_its_own_entry(
        ray_session, redis_client, key_prefix, data_dir, media):  # fmt: skip
    good = [_item(media["gradio_a"]), _item(media["gradio_b"])]
    bomb = _item(media["bikes"], title="raise")
    crash = _item(media["carphone_pristine"], title="crash")
    for it in (good[0], bomb, crash, good[1]):  # one batch of four
        _queue(redis_client, it)
    redis_client.xadd(f"{key_prefix}:videos", {"item": "not json"})  # poison, too
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")

    stats = _run(redis_client, cat, batch_size=4, max_attempts=2, retry_delay_s=0.05)

    assert stats.by_status == {"indexed": 2} and stats.failed_batches >= 3
    assert cat.counts() == {"indexed": 2}
    assert cat.get(bomb.video_id) is None and cat.get(crash.video_id) is None
    dead = WorkStream.from_config(redis_client, _cfg()).dead_entries()
    reasons = {VideoItem.from_json(e["item"]).title if e["item"].startswith("{") else "poison":
               e["reason"] for e in dead}  # fmt: skip
    assert reasons["poison"].startswith("not_json")
    assert reasons["raise"].startswith("max_attempts: 2 deliveries failed")
    assert "RuntimeError: stage bug on http://site.test/bikes.mp4" in reasons["raise"]
    assert "actor_died" in reasons["crash"]
    assert Ledger(redis_client, key_prefix).get(bomb.url)["status"] == "failed"
    assert Ledger(redis_client, key_prefix).get(crash.url)["error"] == "dead_letter: max_attempts"
    assert WorkStream.from_config(redis_client, _cfg()).pending_count() == 0


def test_cli_work_until_empty_then_status_json(redis_url, key_prefix, data_dir, media):
    import redis

    client = redis.Redis.from_url(redis_url)
    for name in ("gradio_a", "gradio_b"):
        _queue(client, _item(media[name]))
    client.xadd(f"{key_prefix}:videos", {"item": "{}"})  # no url: dead-lettered
    env = project_env(PROCESSING_STAGES=",".join(f"{k}={v}" for k, v in STAGES.items()),
                      PROCESSING_NUM_WORKERS=1)  # fmt: skip
    work = subprocess.run([PYTHON, "-m", "processing", "work", "--until-empty", "--num-gpus", "0",
                           "--batch-size", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert work.returncode == 0, work.stderr[-3000:]
    assert "processed 2 videos" in work.stdout and "indexed 2" in work.stdout
    status = subprocess.run([PYTHON, "-m", "processing", "status", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert status.returncode == 0, status.stderr[-3000:]
    st = json.loads(status.stdout)
    assert (st["indexed"], st["queued"], st["in_progress"], st["backlog"]) == (2, 0, 0, 0)
    assert st["dead_lettered"] == 1 and st["catalogue"] == {"indexed": 2}
    assert st["rates_per_minute"]["last_1m"]["indexed"] >= 2
    assert st["stages"]["frames"]["ok"] == st["stages"]["labels"]["ok"] == 2
    assert st["stages"]["frames"]["seconds"] > 0


def test_work_without_until_empty_waits_for_new_items_and_stops_cleanly(
        ray_session, redis_client, key_prefix, data_dir, media):  # fmt: skip
    import threading
    import time

    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
    runner = Runner(_cfg(), client=redis_client, catalogue=cat)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        time.sleep(0.5)  # the worker is up (or starting) and the stream is still empty
        item = _item(media["gradio_a"])
        _queue(redis_client, item)  # arrives while the worker waits
        deadline = time.monotonic() + 60
        while cat.get(item.video_id) is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        runner.stop()  # what SIGINT / SIGTERM do
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert cat.get(item.video_id)["status"] == "indexed"
    assert runner.stats.by_status == {"indexed": 1}
    assert WorkStream.from_config(redis_client, _cfg()).pending_count() == 0


def test_the_real_stages_run_end_to_end(ray_session, redis_client, key_prefix, data_dir, media):
    """With the project's own stages, as pipeline.STEPS names them."""
    items = [_item(media["gradio_a"]), _item(media["gradio_b"])]
    for it in items:
        _queue(redis_client, it)
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
    stats = _run(redis_client, cat, stages={s.name: s.stage for s in STEPS},
                 labelers=("imagenet",))  # the quickest labeler: this tests the runtime
    assert stats.done == 2
    for it in items:
        doc = cat.get(it.video_id)
        assert doc["status"] in ("indexed", "duplicate"), doc["errors"]
        assert doc["embedding_model"] and doc["processed_at"] and len(doc["vector"]) > 100
        assert doc["status"] == "duplicate" or "imagenet" in doc["labels"]
