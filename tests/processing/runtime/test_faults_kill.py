"""kill -9 the worker for real, three times mid-batch: nothing lost, nothing dead-lettered, no Ray process left behind.

``python -m processing work`` runs as a subprocess on real Redis, a real local Ray and real
clips, with the stand-in stages of test_runner.py (decode slowed down so that batches are in
flight when the kill comes). Each driver is killed by pid with SIGKILL once it holds pending
entries; the Ray processes it started (noted from /proc just before the kill: gcs_server,
raylet, the agents, the watchdog) must all be gone soon after. Then one driver is stopped
with SIGTERM (it finishes its batches) and a last one drains with ``--until-empty``; neither
may leave a Ray process either. ``PROCESSING_MAX_ATTEMPTS=1``: were a reclaimed delivery
counted as an attempt, every entry a killed driver held would be dead-lettered. Every entry
ends once in the catalogue (indexed or duplicate), none dead-lettered, none left pending.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.runtime.stream import WorkStream
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.runtime.test_runner import STAGES, TinyFrames, _item, _queue
from tests.processing.runtime.test_timeouts import make_clips

HERE = "tests.processing.runtime.test_faults_kill"
CLIPS = 16
KILL_AFTER_S = (0.2, 1.0, 2.0)  # after the driver first holds pending entries: three kills
CLAIM_IDLE_MS = 2000


class SlowFrames(TinyFrames):
    """TinyFrames taking 0.4 s a video, so that a kill finds batches in flight."""

    def process_one(self, work):
        time.sleep(0.4)
        return super().process_one(work)


def _proc_start(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """Every process below ``root``: pid -> (start time, command line)."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = {}, [p for p, pp in parents.items() if pp == root]
    while todo:
        pid = todo.pop()
        todo.extend(p for p, pp in parents.items() if pp == pid)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        started = _proc_start(pid)
        if started is not None:
            out[pid] = (started, cmd.strip())
    return out


def _alive(procs: dict[int, tuple[int, str]]) -> dict[int, str]:
    return {p: cmd for p, (t, cmd) in procs.items() if _proc_start(p) == t}


def _own_pending(client, stream: WorkStream, pid: int) -> int:
    try:
        consumers = client.xinfo_consumers(stream.key, stream.group)
    except Exception:  # noqa: BLE001 - no group yet
        return 0
    return sum(int(c["pending"]) for c in consumers if f"-{pid}-" in c["name"].decode())


def _start_worker(env, log: Path, started: list, *extra) -> subprocess.Popen:
    with open(log, "a") as out:
        worker = subprocess.Popen([PYTHON, "-m", "processing", "work", "--num-gpus", "0", "--batch-size", "2",
                                   "--no-progress", *extra], cwd=ROOT, env=env, start_new_session=True,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    started.append(worker)
    return worker


def _wait_holding(client, stream, worker, log: Path) -> None:
    """Until ``worker`` holds pending entries (it read a batch and works on it)."""
    deadline = time.monotonic() + 120
    while _own_pending(client, stream, worker.pid) == 0:
        assert worker.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker never took an entry"
        time.sleep(0.05)


def _gone(procs: dict[int, tuple[int, str]], within_s: float = 20.0) -> dict[int, str]:
    """The processes of ``procs`` still alive after waiting up to ``within_s`` for them to end."""
    deadline = time.monotonic() + within_s
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(procs)


@pytest.mark.faults
@pytest.mark.slow
def test_three_kill_9s_of_the_worker_lose_nothing_dead_letter_nothing_and_leave_no_ray(
        redis_client, key_prefix, data_dir):  # fmt: skip
    clips = make_clips(data_dir / "clips", CLIPS)
    items = [_item(p) for p in clips]
    for it in items:
        _queue(redis_client, it)
    stages = STAGES | {"frames": f"{HERE}:SlowFrames"}
    env = project_env(PROCESSING_STAGES=",".join(f"{k}={v}" for k, v in stages.items()),
                      PROCESSING_NUM_WORKERS=1, PROCESSING_CLAIM_IDLE_MS=CLAIM_IDLE_MS,
                      PROCESSING_MAX_ATTEMPTS=1)  # fmt: skip
    cfg = ProcessingConfig.from_settings(num_gpus=0, stages=stages)
    stream = WorkStream.from_config(redis_client, cfg, consumer="check")
    log = data_dir / "workers.log"
    seen: dict[int, tuple[int, str]] = {}  # every process of every driver, to clean up on failure
    workers: list[subprocess.Popen] = []
    held_at_kill, leftovers = [], {}
    try:
        for delay in KILL_AFTER_S:
            worker = _start_worker(env, log, workers)
            _wait_holding(redis_client, stream, worker, log)
            time.sleep(delay)
            ray_procs = _tree(worker.pid)
            seen.update(ray_procs)
            names = " ".join(cmd for _, cmd in ray_procs.values())
            assert "raylet" in names and "gcs_server" in names and "ray::DashboardAgent" in names, names
            held_at_kill.append(_own_pending(redis_client, stream, worker.pid))
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            leftovers.update(_gone(ray_procs))
        assert not leftovers, f"Ray processes outlived their killed driver: {leftovers}"
        assert sum(held_at_kill) > 0 and all(held_at_kill), held_at_kill

        worker = _start_worker(env, log, workers)  # SIGTERM: finish what it holds, stop Ray, exit 0
        _wait_holding(redis_client, stream, worker, log)
        ray_procs = _tree(worker.pid)
        seen.update(ray_procs)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(120) == 0, log.read_text()[-3000:]
        assert _own_pending(redis_client, stream, worker.pid) == 0
        assert not _gone(ray_procs, 10.0), "Ray outlived a driver stopped with SIGTERM"

        final = _start_worker(env, log, workers, "--until-empty")
        final_procs: dict[int, tuple[int, str]] = {}
        deadline = time.monotonic() + 300
        while final.poll() is None and time.monotonic() < deadline:
            final_procs.update(_tree(final.pid))
            time.sleep(0.5)
        seen.update(final_procs)
        assert final.wait(5) == 0, log.read_text()[-3000:]
        assert "raylet" in " ".join(cmd for _, cmd in final_procs.values())
        assert not _gone(final_procs, 10.0), "Ray outlived a driver that ended normally"
    finally:
        for w in workers:
            if w.poll() is None:
                seen.update(_tree(w.pid))
                w.kill()
                w.wait(10)
        for pid in _alive(seen):
            os.kill(pid, signal.SIGKILL)

    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
    statuses = {it.video_id: (cat.get(it.video_id) or {}).get("status") for it in items}
    assert set(statuses.values()) <= {"indexed", "duplicate"}, statuses  # none lost, none failed
    assert sum(cat.counts().values()) == CLIPS  # one document per video
    assert sum(Ledger(redis_client, key_prefix).counts().values()) == CLIPS
    st = stream.stats()
    assert (st["dead"], st["pending"], st["backlog"]) == (0, 0, 0)
    assert not redis_client.exists(cfg.keys.stream_attempts)  # no kill was counted as an attempt
    written = sum(int(v) for key in redis_client.scan_iter(cfg.keys.rate_minute("*"))
                  for v in redis_client.hgetall(key).values())  # writes, replays included  # fmt: skip
    print(f"kills: {len(KILL_AFTER_S)} (+1 SIGTERM), entries pending at each kill: {held_at_kill}, "
          f"clips: {CLIPS}, documents: {sum(cat.counts().values())}, writes: {written} (replays of "
          f"written-but-unacked entries), lost: 0, dead-lettered: {st['dead']}, Ray processes left: "
          f"{len(leftovers)}")
