"""Ray actors that host processing stages, and the pools the runner schedules batches on.

A ``StageHost`` actor builds its stages once (``from_config`` then ``setup()``) and then runs
batches through them; works go in and out through Ray's object store, so decoded frames
never pass through Redis or the driver. Three pools: ``decode`` (FramesStage, CPU),
``model`` (EmbedStage + LabelsStage, GPUs when configured) and ``neardup`` (ONE actor owns
the near-duplicate index, so duplicates are decided in one place, in order).
"""

from __future__ import annotations

import importlib
import logging
import math
import time
from dataclasses import dataclass, field

import ray

from processing.stages.base import Resources, Stage, Work

log = logging.getLogger(__name__)

# step -> the pool that runs it, in the order a batch goes through them
STEPS = (("frames", "decode"), ("embed", "model"), ("neardup", "neardup"), ("labels", "model"))
POOL_STAGES = {"decode": ("frames",), "model": ("embed", "labels"), "neardup": ("neardup",)}


def load_stage_class(target: str) -> type[Stage]:
    """Import ``"module:Class"``; a clear ValueError when it is missing."""
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load stage {target!r}: {type(exc).__name__}: {exc}") from exc
    if not hasattr(cls, "from_config"):
        raise ValueError(f"stage {target!r} has no from_config(cfg) classmethod")
    return cls


def strip(works: list[Work]) -> list[Work]:
    """Drop the arrays the catalogue does not keep (frames, per-frame embeddings, extras)."""
    for w in works:
        w.frames, w.embeddings, w.extras = None, None, {}
    return works


class StageHost:
    """Hosts one pool's stages in one process; ``run(name, works)`` processes a batch."""

    def __init__(self, stage_targets: dict[str, str], cfg):
        self.stages: dict[str, Stage] = {}
        for name, target in stage_targets.items():
            stage = load_stage_class(target).from_config(cfg)
            stage.setup()
            self.stages[name] = stage

    def ready(self) -> list[str]:
        return list(self.stages)

    def run(self, name: str, works: list[Work], last: bool = False) -> list[Work]:
        out = self.stages[name].process_batch(works)
        return strip(out) if last else out

    def teardown(self) -> None:
        for stage in self.stages.values():
            try:
                stage.teardown()
            except Exception:  # noqa: BLE001 - one stage's teardown must not stop the others
                log.exception("teardown of %s failed", type(stage).__name__)


@dataclass
class Pool:
    """Actors of one kind, and which of them are free."""

    name: str
    actors: list = field(default_factory=list)
    idle: list = field(default_factory=list)


def pool_resources(cfg, pool: str) -> Resources:
    """What one actor of ``pool`` asks Ray for: the largest needs its stages declare.

    Stages are built (not set up: that is where models load) to read ``resources``, which
    may depend on their configuration (e.g. an embedder on ``cuda`` needs a GPU).
    """
    need_cpu, need_gpu = 0.0, 0.0
    for name in POOL_STAGES[pool]:
        res = load_stage_class(cfg.stages[name]).from_config(cfg).resources
        need_cpu, need_gpu = max(need_cpu, res.num_cpus), max(need_gpu, res.num_gpus)
    if pool == "model" and cfg.num_gpus > 0:
        need_gpu = need_gpu or 1.0
    else:
        need_gpu = 0.0  # decode and the near-dup index stay on the CPU
    return Resources(num_cpus=need_cpu, num_gpus=need_gpu)


def start_pools(cfg, timeout_s: float = 600.0) -> dict[str, Pool]:
    """Create the three pools sized by ``cfg`` and wait until every actor has set up.

    CPU requests are scaled down (with a warning) when the cluster has fewer CPUs than
    asked for, so actors never wait forever for a core. Raises RuntimeError when a stage
    cannot be built or set up (a missing model, bad config): nothing would succeed.
    """
    sizes = {"decode": cfg.num_workers, "model": cfg.model_workers, "neardup": 1}
    res = {p: pool_resources(cfg, p) for p in sizes}
    wanted = sum(res[p].num_cpus * n for p, n in sizes.items())
    have = ray.cluster_resources().get("CPU", 0.0)
    scale = 1.0
    if wanted > have > 0:
        scale = have / wanted
        log.warning("%d actors want %.1f CPUs, the cluster has %.1f: CPU requests scaled by %.2f",
                    sum(sizes.values()), wanted, have, scale)
    actor_cls = ray.remote(StageHost)
    pools: dict[str, Pool] = {}
    for pool, n in sizes.items():
        r = res[pool]
        cpus = math.floor(r.num_cpus * scale * 1000) / 1000  # rounding down: they must all fit
        opts = {"num_cpus": cpus, "num_gpus": r.num_gpus,
                "max_restarts": -1, "max_task_retries": 0}  # fmt: skip
        targets = {s: cfg.stages[s] for s in POOL_STAGES[pool]}
        actors = [actor_cls.options(name=None, **opts).remote(targets, cfg) for _ in range(n)]
        pools[pool] = Pool(pool, actors, list(actors))
    try:
        _wait_ready(pools, timeout_s)
    except Exception as exc:
        stop_pools(pools)
        cause = getattr(exc, "cause", None) or exc
        raise RuntimeError(f"processing stages failed to start: {type(cause).__name__}: {cause}") from exc
    log.info("actors ready: %s", ", ".join(f"{p} x{len(v.actors)}" for p, v in pools.items()))
    return pools


def _wait_ready(pools: dict[str, Pool], timeout_s: float) -> None:
    """Wait for every actor's set-up, saying every 30 s which pools are still starting."""
    refs = {a.ready.remote(): name for name, p in pools.items() for a in p.actors}
    deadline = time.monotonic() + timeout_s
    pending = list(refs)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"actors not ready after {timeout_s:.0f} s (not enough CPUs/GPUs "
                               f"in the cluster?): {sorted({refs[r] for r in pending})}")
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=min(30.0, left))
        ray.get(done)  # raises the set-up error of a stage
        if pending:
            log.info("waiting for actors to start: %s", sorted({refs[r] for r in pending}))


def stop_pools(pools: dict[str, Pool]) -> None:
    """Let stages tear down (flush indexes), then end the actors."""
    actors = [a for p in pools.values() for a in p.actors]
    try:
        ray.get([a.teardown.remote() for a in actors], timeout=60)
    except Exception:  # noqa: BLE001 - actors may be gone already
        log.warning("some actors did not tear down cleanly", exc_info=True)
    for a in actors:
        ray.kill(a)
