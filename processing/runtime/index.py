"""The near-duplicate index every driver shares: one named, detached Ray actor per stream, the only writer.

Why one actor: two copies processed at the same moment by two workers must never both become
canonical, so the decision has ONE place where it is made, one video at a time. Every
``python -m processing work`` on a Ray cluster (``--ray-address``, or the machine's shared
local Ray: processing/runtime/localray.py) finds it by name: ``neardup-index:<KEY_PREFIX>``
in the Ray namespace ``videopipe``, created by the first driver with
``get_if_exists=True, lifetime="detached"`` (so it does not die with the driver that made it).
It hosts a ``LocalIndexes`` (processing/stages/neardup.py: one ``NearDupIndex`` per embedding
model, never mixed; every model of the stream in this one actor for now, shards later) and
executes one call at a time (a Ray actor's default), so each decision sees every earlier
one. Each driver's ``NearDupStage`` (on its own neardup pool actor, where the frames are)
sends only candidates: frame vectors, quality, duration, phash.

Drivers ``attach`` at start and ``detach`` at the end; the last to detach flushes the index to
its dir and ends the actor, so a later run reloads exactly what was saved. A driver killed
without detaching leaves the actor up (warm; the machine's local Ray goes away with its last
driver anyway). If the actor dies, Ray restarts it (it reloads the last flush, every
``flush_seconds``: decisions since then are lost with it) and a call that fails is sent again
to the actor found or created anew by name: safe, since ``decide`` is idempotent by video_id
(a replayed video gets its registered place back). The writer asks ``states`` after each
batch, so documents follow decisions made by other drivers meanwhile (writer.py).

The actor asks Ray for no CPU (``num_cpus=0``): its work is lookups between the pools' work,
and a driver joining a busy cluster must still reach it. ``where()`` says where it runs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import ray

from processing.config import ProcessingConfig
from processing.pipeline import load_stage_class
from processing.stages.neardup import Candidate, Decision, LocalIndexes, MatchRule, NearDupStage

log = logging.getLogger(__name__)

NAMESPACE = "videopipe"  # the Ray namespace of the project's named actors
ATTACH_TRIES = 20  # the actor may be ending (its last driver detached) when another attaches


def index_name(key_prefix: str) -> str:
    """The shared index actor's name for a stream (one per KEY_PREFIX on a Ray cluster)."""
    return f"neardup-index:{key_prefix}"


class IndexActor:
    """The actor: a ``LocalIndexes`` and the drivers attached to it."""

    def __init__(self, index_dir: str, rule: MatchRule, approx_threshold: int, flush_seconds: float):
        self.index_dir = str(index_dir)
        self.service = LocalIndexes(index_dir, rule, approx_threshold, flush_seconds)
        self.drivers: set[str] = set()

    def attach(self, driver: str, index_dir: str) -> dict:
        if str(index_dir) != self.index_dir:
            log.warning("driver %s uses index dir %s; the shared index keeps %s", driver, index_dir, self.index_dir)
        self.drivers.add(driver)
        return self.where()

    def detach(self, driver: str) -> bool:
        """Flush; True when no driver is left (the caller then ends the actor)."""
        self.drivers.discard(driver)
        self.service.flush()
        return not self.drivers

    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]:
        return self.service.decide(model, candidates)

    def states(self, requests: dict[str, list[str]]) -> dict:
        return self.service.states(requests)

    def flush(self) -> None:
        self.service.flush()

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "index_dir": self.index_dir, "drivers": len(self.drivers), "models": self.service.sizes()}  # fmt: skip


class SharedIndex:
    """A handle on the shared index actor, usable from the driver and from any actor
    (picklable); implements neardup's ``IndexService``. Calls that meet a dead actor are sent
    again to the actor found (or created) anew by name."""

    def __init__(self, name: str, index_dir: str | Path, rule: MatchRule, approx_threshold: int,
                 flush_seconds: float, namespace: str = NAMESPACE):  # fmt: skip
        self.name, self.namespace = name, namespace
        self.args = (str(index_dir), rule, approx_threshold, flush_seconds)
        self._handle = None

    @classmethod
    def for_config(cls, cfg: ProcessingConfig) -> SharedIndex | None:
        """The shared index of ``cfg``'s stream, with the neardup stage's own settings; None
        when the neardup step is not a NearDupStage (a stand-in keeps its own state)."""
        stage_cls = load_stage_class(cfg.stages["neardup"])
        if not issubclass(stage_cls, NearDupStage):
            return None
        stage = stage_cls.from_config(cfg)
        return cls(index_name(cfg.key_prefix), stage.index_dir, stage.rule, stage.approx_threshold, stage.flush_seconds)

    def __getstate__(self):
        return {**self.__dict__, "_handle": None}  # found again by name where it lands

    def handle(self, fresh: bool = False):
        if self._handle is None or fresh:
            self._handle = ray.remote(IndexActor).options(
                name=self.name, namespace=self.namespace, get_if_exists=True, lifetime="detached",
                num_cpus=0, max_restarts=-1, max_task_retries=3,
            ).remote(*self.args)  # fmt: skip
        return self._handle

    def _call(self, method: str, *args, timeout: float | None = None):
        try:
            return ray.get(getattr(self.handle(), method).remote(*args), timeout=timeout)
        except ray.exceptions.RayActorError:
            log.warning("shared near-dup index %s was gone; calling it again", self.name)
            return ray.get(getattr(self.handle(fresh=True), method).remote(*args), timeout=timeout)

    # -- IndexService --------------------------------------------------------------------------------
    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]:
        return self._call("decide", model, candidates)

    def states(self, requests: dict[str, list[str]]) -> dict:
        return self._call("states", requests)

    def flush(self) -> None:
        self._call("flush")

    # -- drivers -------------------------------------------------------------------------------------
    def attach(self, driver: str) -> dict:
        """Register a driver (creating the actor if none is up); returns ``where()``."""
        for attempt in range(ATTACH_TRIES):
            try:
                return ray.get(self.handle(fresh=attempt > 0).attach.remote(driver, self.args[0]), timeout=300)
            except ray.exceptions.RayActorError:
                time.sleep(0.2)  # it was ending: its last driver detached just now
        raise RuntimeError(f"the shared near-dup index {self.name} could not be reached")

    def detach(self, driver: str) -> None:
        """Flush and unregister; the last driver ends the actor (a later run reloads the flush)."""
        try:
            last = ray.get(self.handle().detach.remote(driver), timeout=120)
        except Exception as exc:  # noqa: BLE001 - already gone, or Ray is shutting down
            log.warning("shared near-dup index %s: detach failed: %s", self.name, exc)
            return
        if last:
            ray.kill(self.handle())
            self._handle = None
