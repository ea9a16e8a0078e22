"""Ray actors that host processing stages, and the pools the runner schedules batches on.

A ``StageHost`` actor builds its pool's stages once (``from_config`` then ``setup()``) and
then runs batches through them; batches go in and out through Ray's object store, so
decoded frames never pass through Redis or the driver. After each step the host puts the
stage's counters on the batch (``WorkBatch.stats``), so they travel with it to the writer.
Which stages a pool hosts, and in what order a batch visits them: processing/pipeline.py.

Placement on a cluster: the GPU count is the cluster's (``cluster_config``: ``ray.cluster_resources()``
once the driver has joined, unless ``--num-gpus`` was given), and model actors ask for GPUs when
it has some; the torch device is decided in the actor, where it runs (cuda when torch sees one
there, else cpu: a stage's ``setup``). With DECODE_RESOURCE / MODEL_RESOURCE set, the decode
actors, and the model and neardup actors, ask a small share (``PLACEMENT_SHARE``) of that custom
resource, so they run only on the nodes started with it (``ray start --resources``). Once the
actors are up, one log line per pool names the nodes they run on (``StageHost.where``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import ray

from processing.config import ProcessingConfig
from processing.pipeline import STEPS, load_stage_class
from processing.stages.base import Resources, Stage
from processing.work import WorkBatch

log = logging.getLogger(__name__)

PLACEMENT_SHARE = 0.001  # of a placement resource, per actor: a node offering 1 of it holds 1000 actors


class StageHost:
    """Hosts one pool's stages in one process; ``run(name, batch)`` processes a batch.

    ``overrides``: step name -> constructor arguments the runtime adds (the neardup step gets
    ``index``, the shared index actor's handle: processing/runtime/index.py).
    """

    def __init__(self, stage_targets: dict[str, str], cfg: ProcessingConfig, overrides: dict | None = None):
        self.stages: dict[str, Stage] = {}
        for name, target in stage_targets.items():
            stage = load_stage_class(target).from_config(cfg, **(overrides or {}).get(name, {}))
            stage.setup()
            self.stages[name] = stage

    def ready(self) -> list[str]:
        return list(self.stages)

    def where(self) -> dict:
        """Where this actor runs: node id and IP, pid, the GPUs Ray granted it, and the torch
        device each model stage decided on here (set-up done)."""
        ctx = ray.get_runtime_context()
        devices = {n: s.device for n, s in self.stages.items() if isinstance(getattr(s, "device", None), str)}
        return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "gpus": [str(g) for g in ray.get_gpu_ids()], "devices": devices}  # fmt: skip

    def run(self, name: str, batch: WorkBatch, last: bool = False) -> WorkBatch:
        stage = self.stages[name]
        batch.works = stage.process_batch(batch.works)
        batch.stats[name] = stage.stats.take()
        if last:  # the batch leaves the actors: the arrays stay here
            for work in batch.works:
                work.release()
        return batch

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


def pool_stages(cfg: ProcessingConfig, pool: str) -> dict[str, str]:
    """Step name -> "module:Class" of the stages ``pool`` hosts."""
    return {step.name: cfg.stages[step.name] for step in STEPS if step.pool == pool}


def pool_sizes(cfg: ProcessingConfig) -> dict[str, int]:
    """Actors per pool (the pools of pipeline.POOLS): decode and model as configured; one
    near-dup actor per driver (it turns works into candidates for the shared index actor)."""
    return {"decode": cfg.num_workers, "model": cfg.model_workers, "neardup": 1}


def cluster_config(cfg: ProcessingConfig) -> ProcessingConfig:
    """``cfg`` with the GPUs counted on the Ray cluster this process has joined, unless given."""
    if cfg.num_gpus is not None:
        return cfg
    counted = cfg.with_cluster_gpus(ray.cluster_resources().get("GPU", 0.0))
    log.info("GPUs on the Ray cluster: %d; model actors: %d%s", counted.num_gpus, counted.model_workers,
             ", asking a GPU each" if counted.num_gpus else ", on CPUs")  # fmt: skip
    return counted


def pool_resources(cfg: ProcessingConfig, pool: str) -> Resources:
    """What one actor of ``pool`` asks Ray for: the largest needs its stage classes declare
    (read from the classes: nothing is built). GPUs only when the run has them."""
    declared = [load_stage_class(t).resources for t in pool_stages(cfg, pool).values()]
    gpus = max(r.num_gpus for r in declared) if cfg.num_gpus else 0.0
    return Resources(num_cpus=max(r.num_cpus for r in declared), num_gpus=gpus)


def pool_placement(cfg: ProcessingConfig, pool: str) -> dict[str, float]:
    """The custom resources one actor of ``pool`` asks for, so it runs only on the nodes offering
    them: DECODE_RESOURCE for decode; MODEL_RESOURCE for model and neardup (a batch goes
    embed -> neardup -> labels with its frames: on one node, they do not travel)."""
    name = {"decode": cfg.decode_resource, "model": cfg.model_resource, "neardup": cfg.model_resource}.get(pool)
    return {name: PLACEMENT_SHARE} if name else {}


def start_pools(cfg: ProcessingConfig, timeout_s: float = 600.0, *, index=None,
                shared: bool = False) -> dict[str, Pool]:  # fmt: skip
    """Create the three pools sized by ``cfg`` and wait until every actor has set up.

    CPU requests are scaled down (with a warning) when the cluster has fewer CPUs than
    asked for, so actors never wait forever for a core. ``shared``: the machine's local Ray,
    which other drivers use too (processing/runtime/localray.py): the actors ask Ray for no
    CPUs, the drivers share the cores through the OS as separate Rays did (Ray's accounting
    would make a second driver's actors wait until the first driver is done).
    ``index``: the shared near-dup index (processing/runtime/index.py), handed to the neardup
    stage. Raises RuntimeError when a stage cannot be built or set up (a missing model, bad
    config): nothing would succeed.
    """
    cfg = cluster_config(cfg)
    sizes = pool_sizes(cfg)
    res = {p: pool_resources(cfg, p) for p in sizes}
    wanted = sum(res[p].num_cpus * n for p, n in sizes.items())
    have = ray.cluster_resources().get("CPU", 0.0)
    scale = 0.0 if shared else 1.0
    if wanted > have > 0 and not shared:
        scale = have / wanted
        log.warning("%d actors want %.1f CPUs, the cluster has %.1f: CPU requests scaled by %.2f",
                    sum(sizes.values()), wanted, have, scale)
    actor_cls = ray.remote(StageHost)
    pools: dict[str, Pool] = {}
    for pool, n in sizes.items():
        r = res[pool]
        cpus = math.floor(r.num_cpus * scale * 1000) / 1000  # rounding down: they must all fit
        opts = {"num_cpus": cpus, "num_gpus": r.num_gpus, "resources": pool_placement(cfg, pool),
                "max_restarts": -1, "max_task_retries": 0}  # fmt: skip
        targets = pool_stages(cfg, pool)
        overrides = {"neardup": {"index": index}} if index is not None and "neardup" in targets else {}
        actors = [actor_cls.options(name=None, **opts).remote(targets, cfg, overrides) for _ in range(n)]
        pools[pool] = Pool(pool, actors, list(actors))
    try:
        _wait_ready(pools, timeout_s)
    except Exception as exc:
        stop_pools(pools)
        cause = getattr(exc, "cause", None) or exc
        raise RuntimeError(f"processing stages failed to start: {type(cause).__name__}: {cause}") from exc
    log.info("actors ready: %s", ", ".join(f"{p} x{len(v.actors)}" for p, v in pools.items()))
    log_placement(pools)
    return pools


def placement(pools: dict[str, Pool], timeout_s: float = 60.0) -> dict[str, list[dict]]:
    """Pool name -> ``StageHost.where()`` of each of its actors."""
    return {name: ray.get([a.where.remote() for a in p.actors], timeout=timeout_s) for name, p in pools.items()}


def log_placement(pools: dict[str, Pool]) -> None:
    """One line per pool naming the nodes its actors run on (and the GPUs and devices of those
    that have them); a warning for an actor granted a GPU whose models run on the CPU."""
    try:
        where = placement(pools)
    except Exception as exc:  # noqa: BLE001 - only a report: the run goes on
        log.warning("could not ask the actors where they run: %s", exc)
        return
    for name, places in where.items():
        nodes = Counter((w["node_id"], w["node_ip"]) for w in places)
        text = ", ".join(f"{n} actor{'s' * (n > 1)} on node {node} ({ip})" for (node, ip), n in nodes.items())
        gpus = sorted({g for w in places for g in w["gpus"]})
        devices = sorted({d for w in places for d in w["devices"].values()})
        extra = (f"; GPUs {','.join(gpus)}" if gpus else "") + (f"; device {','.join(devices)}" if devices else "")
        log.info("%s pool: %s%s", name, text, extra)
        for w in places:
            if w["gpus"] and w["devices"] and not any(d.startswith("cuda") for d in w["devices"].values()):
                log.warning("%s actor (pid %s on node %s) was granted GPU %s but torch sees no CUDA there: "
                            "its models run on the CPU", name, w["pid"], w["node_id"], ",".join(w["gpus"]))  # fmt: skip


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
