"""The main loop of ``python -m processing work``: stream -> Ray actor pools -> catalogue -> ack.

One driver process reads batches from the stream (only while fewer than ``max_inflight``
batches are in flight: back-pressure whatever the stream's length), moves each batch
through the steps of processing/pipeline.py (frames on the decode pool -> embed on the
model pool -> neardup on this driver's neardup actor, which asks the one index actor every
driver shares, processing/runtime/index.py -> labels on the model pool), handing Ray
object refs from step to step so decoded frames stay in Ray's object store, then writes the
documents and the stages' counters, records the ledger and XACKs. The driver
waits on refs without fetching them, so a model actor is handed the next decoded batch as
soon as it is free; it never waits for a decode it does not need.

A batch that fails as a whole (an actor died, a stage raised, the catalogue refused the
write) is not acked: its error is noted and each of its entries is tried again on its own
after a short back-off (so one bad entry cannot sink its neighbours). Only the failure of an
entry alone counts as one of its attempts, and an entry that has failed ``max_attempts``
times is dead-lettered; entries left behind by a dead driver are taken over by another one
at no cost (processing/runtime/stream.py).

Every step on the decode and model pools has a deadline: ``step_timeout`` seconds per video
of the batch. A step past it is abandoned: its actor is killed and restarted, and the
batch's videos run that step again one by one; a video that overruns alone is recorded
``failed`` with code ``timeout`` at that stage and goes on to the catalogue, so its
neighbours carry on. (The near-dup actor has no deadline: it owns the index, and its
per-video work is an in-memory lookup.)

SIGINT/SIGTERM stop reading; in-flight batches finish first (a second signal stops at once;
unacked entries are then reclaimed by another worker after ``claim_idle_ms``). The local Ray
a driver starts is stopped on every exit, and a watchdog stops it when the driver is killed
(processing/runtime/reaper.py).
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
from processing.catalogue import open_catalogue
from processing.config import ProcessingConfig
from processing.pipeline import STEPS
from processing.runtime.metrics import WorkerMetrics
from processing.runtime.pools import Pool, cluster_config, start_pools, stop_pools
from processing.runtime import localray
from processing.runtime.index import SharedIndex
from processing.runtime.progress import Progress
from processing.runtime.reaper import RayReaper
from processing.runtime.stream import Delivery, WorkStream, requeue
from processing.runtime.writer import CatalogueWriter
from processing.work import Work, WorkBatch

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the repository: shipped to a cluster as the job's code
UPLOAD_EXCLUDES = [".git", ".venv", "data", "tests/data", "bench/data", "__pycache__", "*.sqlite"]
RETRY_DELAY_S = 1.0  # first back-off of a failed batch's entries; doubles per attempt, max 30 s
UNTIMED_POOLS = ("neardup",)  # pools whose steps have no deadline (see the module docstring)
_reapers: list[RayReaper] = []  # watchdogs of the local Ray this process started


def init_ray(cfg: ProcessingConfig) -> bool:
    """Start or join Ray unless it is up; returns True when this call started it.

    ``cfg.ray_address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) joins a cluster;
    with an explicit address the project's code is shipped to the cluster as the job's
    working dir. Otherwise this driver joins the machine's shared local Ray of its DATA_DIR,
    started for it if none runs (processing/runtime/localray.py: every driver on one machine
    must reach the one near-dup index actor), which offers the placement resources named in
    ``cfg`` (one machine has every kind of node). The GPUs are counted on the cluster after
    this (``pools.cluster_config``), not here.
    """
    if ray.is_initialized():
        return False
    common = {"include_dashboard": cfg.ray_dashboard, "log_to_driver": cfg.ray_logs,
              "logging_level": logging.WARNING}  # fmt: skip
    if cfg.ray_address:
        runtime_env = {"working_dir": str(ROOT), "excludes": UPLOAD_EXCLUDES}
        ray.init(address=cfg.ray_address, runtime_env=runtime_env, **common)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**common)  # inside `ray job submit`: the job's runtime env applies
    else:  # its keeper runs the RayReaper watchdog (processing/runtime/reaper.py)
        names = (cfg.decode_resource, cfg.model_resource, cfg.index_resource)
        localray.join(cfg.data_dir, num_gpus=cfg.num_gpus, resources=[n for n in names if n],
                      dashboard=cfg.ray_dashboard, log_to_driver=cfg.ray_logs)  # fmt: skip
    return True


def shutdown_ray() -> None:
    """``ray.shutdown()``, then the watchdog of a local Ray stops whatever it left behind."""
    if localray.joined():
        localray.leave()  # the keeper stops the shared local Ray once its last driver left
        return
    try:
        ray.shutdown()
    finally:
        while _reapers:
            _reapers.pop().close()


@dataclass(eq=False)
class InFlight:
    """The driver's record of one batch of entries moving through the steps together."""

    deliveries: list[Delivery]
    step: int = 0  # index into STEPS of the next (or running) step
    ref: ray.ObjectRef | None = None  # the WorkBatch the last finished step returned
    actor: object = None
    pool: str | None = None
    deadline: float | None = None  # when the running step is abandoned (monotonic clock)
    started: float = 0.0  # when the running step was handed to its actor

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


class Flight:
    """Every batch this driver holds: waiting for a step, running one, or due for a retry."""

    def __init__(self):
        self.waiting: list[deque[InFlight]] = [deque() for _ in STEPS]  # by the step they wait for
        self.running: dict[ray.ObjectRef, InFlight] = {}
        self.retries: deque[Retry] = deque()

    def __len__(self) -> int:
        """Batches between the stream and the catalogue (retries not counted: not read yet)."""
        return len(self.running) + sum(len(q) for q in self.waiting)

    def entry_ids(self) -> list[str]:
        batches = [*self.running.values(), *(b for q in self.waiting for b in q)]
        return [i for b in batches for i in b.ids] + [d.entry_id for r in self.retries for d in r.deliveries]


class Runner:
    """Drains the stream through the actor pools into the catalogue.

    ``until_empty``: return once nothing is queued, pending or in flight; otherwise run
    until ``stop()`` (or SIGINT/SIGTERM when ``run`` is called from the main thread).
    """

    def __init__(self, cfg: ProcessingConfig, *, until_empty: bool = False, client=None, catalogue=None,
                 consumer: str | None = None, progress: bool | Progress = False,
                 retry_delay_s: float = RETRY_DELAY_S, metrics: WorkerMetrics | None = None):  # fmt: skip
        self.cfg = cfg
        self.until_empty = until_empty
        self.client = client or get_redis()
        self.catalogue = catalogue or open_catalogue()
        self.stream = WorkStream.from_config(self.client, cfg, consumer=consumer)
        self.writer = CatalogueWriter(self.catalogue, self.client, cfg.keys,
                                      relabel=lambda item: requeue(self.client, cfg, item))  # fmt: skip
        self.retry_delay_s = retry_delay_s
        self.stats = RunStats()
        self.metrics = metrics  # Prometheus series (work --metrics-port), fed as batches finish
        if metrics:
            metrics.watch_stream(self.stream.stats)
        self._stopping = threading.Event()
        self._signals = 0
        self._touched = 0.0
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
        index, driver = None, f"{self.stream.consumer}"
        try:
            self.cfg = cluster_config(self.cfg)  # the cluster's GPUs, unless --num-gpus was given
            self.stream.ensure_group()
            index = SharedIndex.for_config(self.cfg)  # one near-dup decision for every driver
            if index is not None:
                log.info("near-dup index %s: %s", index.name, index.attach(driver))
            self.writer.index = index
            pools = start_pools(self.cfg, index=index, shared=localray.joined())
            if self.metrics and "model" in pools:
                self.metrics.set_model_actors(len(pools["model"].actors))
            self._loop(pools)
            self.catalogue.refresh()  # what this run wrote is searchable when it returns
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if pools:
                stop_pools(pools)
            if index is not None:
                index.detach(driver)
            self._safe(self.stream.leave)
            if self.progress:
                self.progress.close()
            if started:
                shutdown_ray()
        return self.stats

    def _loop(self, pools: dict[str, Pool]) -> None:
        flight = Flight()
        order = {p: [i for i in reversed(range(len(STEPS))) if STEPS[i].pool == p]
                 for p in pools}  # later steps first: finishing a batch frees room  # fmt: skip
        self._touched = time.monotonic()
        while True:
            self._keep_claims(flight)
            read_nothing = self._read(flight)
            if not flight:
                if self._idle(flight, read_nothing):
                    return
                continue
            self._dispatch(flight, pools, order)
            self._collect(flight, pools)

    def _keep_claims(self, flight: Flight) -> None:
        """Now and then reset the idle time of every entry we hold, so none is reclaimed."""
        if time.monotonic() - self._touched > self.cfg.claim_idle_ms / 3000:
            ids = flight.entry_ids()
            self._safe(lambda: self.stream.touch(ids))
            self._touched = time.monotonic()

    def _read(self, flight: Flight) -> bool:
        """Read while there is room (back-pressure), due retries first; True when nothing came."""
        while not self._stopping.is_set() and len(flight) < self.cfg.max_inflight:
            deliveries = self._next_deliveries(flight.retries, idle=not flight and not flight.retries)
            if deliveries is None:
                return True
            if deliveries:
                flight.waiting[0].append(InFlight(deliveries))
        return False

    def _idle(self, flight: Flight, read_nothing: bool) -> bool:
        """Nothing in flight: True to end the run (stopped, or drained with ``until_empty``)."""
        if self._stopping.is_set():
            return True
        if flight.retries:
            time.sleep(min(0.2, max(0.0, flight.retries[0].not_before - time.monotonic())))
            return False
        if self.until_empty and read_nothing:
            st = self._safe(self.stream.stats) or {"pending": 1, "backlog": 0}
            if st["pending"] == 0 and not st["backlog"]:
                return True  # drained: nothing queued, nothing in progress anywhere
            if not st["backlog"]:  # only others' entries left: wait to reclaim them
                time.sleep(min(0.5, self.cfg.claim_idle_ms / 4000))
        return False

    def _dispatch(self, flight: Flight, pools: dict[str, Pool], order: dict[str, list[int]]) -> None:
        """Hand waiting batches to free actors."""
        for pool_name, pool in pools.items():
            for step in order[pool_name]:
                while pool.idle and flight.waiting[step]:
                    batch = flight.waiting[step].popleft()
                    flight.running[self._submit(batch, pool)] = batch

    def _collect(self, flight: Flight, pools: dict[str, Pool]) -> None:
        """Wait briefly for a step to finish (without fetching its output); move its batch on."""
        if not flight.running:
            return
        done, _ = ray.wait(list(flight.running), num_returns=1, timeout=0.2, fetch_local=False)
        for ref in done:
            batch = flight.running.pop(ref)
            pools[batch.pool].idle.append(batch.actor)
            batch.ref, batch.step = ref, batch.step + 1
            if batch.step < len(STEPS):
                flight.waiting[batch.step].append(batch)
            else:
                self._finish(batch, flight.retries)
        self._expire(flight, pools)

    def _submit(self, batch: InFlight, pool: Pool) -> ray.ObjectRef:
        actor = pool.idle.pop()
        if batch.step == 0:
            arg = WorkBatch([Work(item=d.item, entry_id=d.entry_id) for d in batch.deliveries])
        else:
            arg = batch.ref  # resolved by Ray in the actor's process, never fetched here
        batch.actor, batch.pool = actor, pool.name
        batch.started = time.monotonic()
        timed = self.cfg.step_timeout > 0 and pool.name not in UNTIMED_POOLS
        batch.deadline = batch.started + self.cfg.step_timeout * len(batch.deliveries) if timed else None
        return actor.run.remote(STEPS[batch.step].name, arg, last=batch.step == len(STEPS) - 1)

    # -- deadlines ------------------------------------------------------------------------------
    def _expire(self, flight: Flight, pools: dict[str, Pool]) -> None:
        """Abandon every step past its deadline: kill its actor (Ray restarts it), then run the
        step again on each video alone, or fail the video with ``timeout`` if it was alone."""
        now = time.monotonic()
        for ref, batch in list(flight.running.items()):
            if batch.deadline is None or now < batch.deadline:
                continue
            del flight.running[ref]
            name = STEPS[batch.step].name
            log.warning("step %s of a batch of %d ran past its deadline (%.0f s); killing its actor",
                        name, len(batch.ids), now - batch.started)  # fmt: skip
            ray.kill(batch.actor, no_restart=False)
            self._await_restart(batch.actor)
            pools[batch.pool].idle.append(batch.actor)
            try:
                works, stats = self._step_input(batch)
            except Exception as exc:  # noqa: BLE001 - the input is lost: retry the entries
                self._failed(batch, exc, flight.retries)
                continue
            if len(works) > 1:  # which video hung is unknown: each runs the step alone
                by_entry = {w.entry_id: w for w in works}
                for i, d in enumerate(batch.deliveries):
                    piece = InFlight([d], step=batch.step)
                    if batch.step > 0:
                        piece.ref = ray.put(WorkBatch([by_entry[d.entry_id]], stats if i == 0 else {}))
                    flight.waiting[batch.step].appendleft(piece)
                continue
            (work,) = works
            seconds = round(now - batch.started, 3)
            work.item.fail(name, "timeout", f"no result after {seconds:.0f} s (PROCESSING_STEP_TIMEOUT "
                                            f"{self.cfg.step_timeout:g} s per video)")  # fmt: skip
            stats[name] = {"timeout": 1, "videos": 1, "seconds": seconds}
            nxt = InFlight(batch.deliveries, step=batch.step + 1)
            if nxt.step == len(STEPS):
                work.release()
            nxt.ref = ray.put(WorkBatch([work], stats))
            if nxt.step < len(STEPS):
                flight.waiting[nxt.step].append(nxt)  # later steps pass a failed video by
            else:
                self._finish(nxt, flight.retries)

    @staticmethod
    def _step_input(batch: InFlight) -> tuple[list[Work], dict]:
        """The works a step was given (fetched from the object store after step 0) and the
        counters of the steps before."""
        if batch.step == 0:
            return [Work(item=d.item, entry_id=d.entry_id) for d in batch.deliveries], {}
        given: WorkBatch = ray.get(batch.ref)
        return given.works, given.stats

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

    def _finish(self, batch: InFlight, retries: deque[Retry]) -> None:
        try:
            done = ray.get(batch.ref)
            counts = self.writer.write(done)
        except Exception as exc:  # noqa: BLE001 - any failure: retry the entries one by one
            self._failed(batch, exc, retries)
            return
        if self.metrics:
            self.metrics.record_batch(done.stats, counts)
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

    def _failed(self, batch: InFlight, exc: Exception, retries: deque[Retry]) -> None:
        cause = getattr(exc, "cause", None) or exc
        code = "actor_died" if isinstance(exc, ray.exceptions.RayActorError) else "batch_error"
        if code == "actor_died":
            self._await_restart(batch.actor)
        error = f"{code}: {type(cause).__name__}: {cause}".splitlines()[0]
        log.warning("batch of %d failed (%s); retrying its entries one by one", len(batch.ids), error)
        self.stats.failed_batches += 1
        if self.metrics:
            self.metrics.record_retry()
        # one of its attempts only when the entry was alone, and Redis was not what failed
        counted = len(batch.ids) == 1 and not isinstance(cause, (redis.ConnectionError, redis.TimeoutError))
        self._safe(lambda: self.stream.note_error(batch.ids, error, counted=counted))
        attempt = max(d.attempt for d in batch.deliveries)
        delay = min(self.retry_delay_s * 2 ** (attempt - 1), 30.0)
        for d in batch.deliveries:
            retries.append(Retry([d], time.monotonic() + delay))
