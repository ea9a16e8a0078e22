"""The main loop of ``python -m processing work``: stream -> Ray actor pools -> catalogue -> ack.

One driver process reads batches from the stream (only while fewer than ``max_inflight``
batches are in flight: back-pressure whatever the stream's length), moves each batch
through frames (decode pool) -> embed (model pool) -> neardup (the one neardup actor) ->
labels (model pool), handing Ray object refs from step to step so decoded frames stay in
Ray's object store, then writes the documents, records the ledger and XACKs. The driver
waits on refs without fetching them, so a model actor is handed the next decoded batch as
soon as it is free; it never waits for a decode it does not need.

A batch that fails as a whole (an actor died, a stage raised, the catalogue refused the
write) is not acked: its error is noted and each of its entries is tried again on its own
after a short back-off (so one bad entry cannot sink its neighbours), and an entry that has
failed ``max_attempts`` times is dead-lettered. SIGINT/SIGTERM stop reading; in-flight
batches finish first (a second signal stops at once; unacked entries are then reclaimed by
another worker after ``claim_idle_ms``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import ray
import redis

from crawler.connection import get_redis
from processing.actors import STEPS, Pool, start_pools, stop_pools
from processing.catalogue import open_catalogue
from processing.progress import Progress
from processing.stages.base import Work
from processing.stream import Delivery, WorkStream
from processing.writer import CatalogueWriter

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
UPLOAD_EXCLUDES = [".git", ".venv", "data", "tests/data", "bench/data", "__pycache__", "*.sqlite"]
RETRY_DELAY_S = 1.0  # first back-off of a failed batch's entries; doubles per attempt, max 30 s


def init_ray(cfg) -> bool:
    """Start or join Ray unless it is up; returns True when this call started it.

    ``cfg.ray_address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) joins a cluster;
    with an explicit address the project's code is shipped to the cluster as the job's
    working dir. Otherwise a local Ray sized to this machine is started.
    """
    if ray.is_initialized():
        return False
    common = {"include_dashboard": False, "log_to_driver": cfg.ray_logs,
              "logging_level": logging.WARNING}  # fmt: skip
    if cfg.ray_address:
        runtime_env = {"working_dir": str(ROOT), "excludes": UPLOAD_EXCLUDES}
        ray.init(address=cfg.ray_address, runtime_env=runtime_env, **common)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**common)  # inside `ray job submit`: the job's runtime env applies
    else:
        ray.init(num_cpus=os.cpu_count() or 1, num_gpus=cfg.num_gpus, **common)
    return True


@dataclass
class Batch:
    """Entries moving through the steps together."""

    deliveries: list[Delivery]
    step: int = 0  # index into STEPS of the next (or running) step
    ref: ray.ObjectRef | None = None  # the output of the last finished step
    actor: object = None
    pool: str | None = None

    @property
    def ids(self) -> list[str]:
        return [d.entry_id for d in self.deliveries]


@dataclass
class Retry:
    deliveries: list[Delivery]
    not_before: float


@dataclass
class RunStats:
    batches: int = 0
    failed_batches: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.by_status.values())


class Runner:
    """Drains the stream through the actor pools into the catalogue.

    ``until_empty``: return once nothing is queued, pending or in flight; otherwise run
    until ``stop()`` (or SIGINT/SIGTERM when ``run`` is called from the main thread).
    """

    def __init__(self, cfg, *, until_empty: bool = False, client=None, catalogue=None,
                 consumer: str | None = None, progress: bool | Progress = False,
                 retry_delay_s: float = RETRY_DELAY_S):  # fmt: skip
        self.cfg = cfg
        self.until_empty = until_empty
        self.client = client or get_redis()
        self.catalogue = catalogue or open_catalogue()
        self.stream = WorkStream.from_config(self.client, cfg, consumer=consumer)
        self.writer = CatalogueWriter(self.catalogue, self.client)
        self.retry_delay_s = retry_delay_s
        self.stats = RunStats()
        self._stopping = threading.Event()
        self._signals = 0
        self.progress: Progress | None = None
        if isinstance(progress, Progress):
            self.progress = progress
        elif progress:
            self.progress = Progress(self._remaining)

    # -- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading; in-flight batches finish, then ``run`` returns."""
        self._stopping.set()

    def _on_signal(self, signum, _frame):
        self._signals += 1
        if self._signals > 1:
            raise KeyboardInterrupt  # second signal: stop now; pending entries get reclaimed
        log.warning("%s: finishing in-flight batches (again to stop at once)",
                    signal.Signals(signum).name)
        self.stop()

    def _remaining(self) -> int | None:
        s = self.stream.stats()
        return None if s["backlog"] is None else s["backlog"] + s["pending"]

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> RunStats:
        started = init_ray(self.cfg)
        old_handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, self._on_signal)
        pools: dict[str, Pool] = {}
        try:
            self.stream.ensure_group()
            pools = start_pools(self.cfg)
            self._loop(pools)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if pools:
                stop_pools(pools)
            self._safe(self.stream.leave)
            if self.progress:
                self.progress.close()
            if started:
                ray.shutdown()
        return self.stats

    def _loop(self, pools: dict[str, Pool]) -> None:
        cfg = self.cfg
        waiting: dict[int, deque[Batch]] = {i: deque() for i in range(len(STEPS))}
        running: dict[ray.ObjectRef, Batch] = {}
        retries: deque[Retry] = deque()
        pool_steps = {p: [i for i in reversed(range(len(STEPS))) if STEPS[i][1] == p]
                      for p in pools}  # later steps first: finishing frees room  # fmt: skip
        touched = time.monotonic()
        while True:
            in_flight = len(running) + sum(len(q) for q in waiting.values())
            if time.monotonic() - touched > cfg.claim_idle_ms / 3000:  # keep our entries ours
                ids = [i for b in [*running.values(), *(b for q in waiting.values() for b in q)]
                       for i in b.ids] + [d.entry_id for r in retries for d in r.deliveries]  # fmt: skip
                self._safe(lambda: self.stream.touch(ids))
                touched = time.monotonic()
            # 1. read while there is room (back-pressure), retries first
            read_nothing = False
            while not self._stopping.is_set() and in_flight < cfg.max_inflight:
                deliveries = self._next_deliveries(retries, idle=in_flight == 0 and not retries)
                if deliveries is None:
                    read_nothing = True
                    break
                if deliveries:
                    waiting[0].append(Batch(deliveries))
                    in_flight += 1
            # 2. nothing in flight: stop, finish, or wait for work
            if in_flight == 0:
                if self._stopping.is_set():
                    return
                if retries:
                    time.sleep(min(0.2, max(0.0, retries[0].not_before - time.monotonic())))
                    continue
                if self.until_empty and read_nothing:
                    st = self._safe(self.stream.stats) or {"pending": 1, "backlog": 0}
                    if st["pending"] == 0 and not st["backlog"]:
                        return  # drained: nothing queued, nothing in progress anywhere
                    if not st["backlog"]:  # only others' entries left: wait to reclaim them
                        time.sleep(min(0.5, cfg.claim_idle_ms / 4000))
                continue
            # 3. hand ready batches to free actors
            for pool_name, pool in pools.items():
                for step in pool_steps[pool_name]:
                    while pool.idle and waiting[step]:
                        batch = waiting[step].popleft()
                        running[self._submit(batch, pool)] = batch
            # 4. wait for a step to finish (without fetching its output)
            if not running:
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=0.2, fetch_local=False)
            for ref in done:
                batch = running.pop(ref)
                pools[batch.pool].idle.append(batch.actor)
                batch.ref, batch.step = ref, batch.step + 1
                if batch.step < len(STEPS):
                    waiting[batch.step].append(batch)
                else:
                    self._finish(batch, retries)

    def _submit(self, batch: Batch, pool: Pool) -> ray.ObjectRef:
        name, _ = STEPS[batch.step]
        actor = pool.idle.pop()
        last = batch.step == len(STEPS) - 1
        if batch.step == 0:
            arg = [Work(item=d.item, entry_id=d.entry_id) for d in batch.deliveries]
        else:
            arg = batch.ref  # resolved by Ray in the actor's process, never fetched here
        batch.actor, batch.pool = actor, pool.name
        return actor.run.remote(name, arg, last=last)

    def _next_deliveries(self, retries: deque[Retry], idle: bool) -> list[Delivery] | None:
        """A due retry, else new or reclaimed entries; None when there is nothing to read.

        Redis trouble never ends the worker: a vanished stream or group is recreated, an
        outage is waited out (entries in flight stay pending and are reclaimed later).
        """
        try:
            if retries and retries[0].not_before <= time.monotonic():
                return self.stream.redeliver([d.entry_id for d in retries.popleft().deliveries])
            block = self.cfg.block_ms if idle else None
            return self.stream.read(self.cfg.batch_size, block_ms=block) or None
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            log.warning("work stream or group vanished (%s); recreating it", exc)
            self._safe(self.stream.ensure_group)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable (%s); trying again in 2 s", exc)
            time.sleep(2.0)
        return None

    def _safe(self, fn, default=None):
        """Call ``fn``; on a Redis error log it and return ``default``."""
        try:
            return fn()
        except redis.RedisError as exc:
            log.warning("Redis error in %s: %s", getattr(fn, "__name__", fn), exc)
            return default

    def _finish(self, batch: Batch, retries: deque[Retry]) -> None:
        try:
            works = ray.get(batch.ref)
            counts = self.writer.write(works)
        except Exception as exc:  # noqa: BLE001 - any failure: retry the entries one by one
            self._failed(batch, exc, retries)
            return
        # written: a failed ack only means a harmless redelivery later (writes are idempotent)
        self._safe(lambda: self.stream.ack(batch.ids))
        self.stats.batches += 1
        for k, v in counts.items():
            self.stats.by_status[k] = self.stats.by_status.get(k, 0) + v
        if self.progress:
            self.progress.add(counts)

    @staticmethod
    def _await_restart(actor, timeout_s: float = 120.0) -> None:
        """Block until a crashed actor has restarted (set-up included), so that the retries of
        its batch's innocent entries are not spent on an actor that is still coming back."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ray.get(actor.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                return
            except Exception as exc:  # noqa: BLE001 - restarting: ask again until the deadline
                if time.monotonic() >= deadline:
                    log.warning("actor not back after %.0f s: %s", timeout_s, exc)
                    return
                time.sleep(0.2)

    def _failed(self, batch: Batch, exc: Exception, retries: deque[Retry]) -> None:
        cause = getattr(exc, "cause", None) or exc
        code = "actor_died" if isinstance(exc, ray.exceptions.RayActorError) else "batch_error"
        if code == "actor_died":
            self._await_restart(batch.actor)
        error = f"{code}: {type(cause).__name__}: {cause}".splitlines()[0]
        log.warning("batch of %d failed (%s); retrying its entries one by one", len(batch.ids), error)
        self.stats.failed_batches += 1
        self._safe(lambda: self.stream.note_error(batch.ids, error))
        attempt = max(d.attempt for d in batch.deliveries)
        delay = min(self.retry_delay_s * 2 ** (attempt - 1), 30.0)
        for d in batch.deliveries:
            retries.append(Retry([d], time.monotonic() + delay))
