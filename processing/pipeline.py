"""The one list of processing steps: each step's name, its stage class, and the pool that runs it.

A batch goes through ``STEPS`` in order. Pools are the Ray actors a step runs on: ``decode``
(CPU decode actors: frames, then scenes; with the default ScenesStage the frames step's one
decode pass also finds the cuts, and the scenes step takes them from the item), ``model`` (embed and labels share the model actors,
GPUs when the run has them), ``neardup`` (one actor per driver; the near-duplicate index itself
is ONE actor that every driver shares, so duplicates are decided in one place, one at a time:
processing/runtime/index.py). A step's class can be replaced without code changes:
``PROCESSING_STAGES="frames=my.module:MyFrames"`` (see ``stage_targets``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from processing.stages.base import Stage


@dataclass(frozen=True)
class Step:
    name: str
    stage: str  # "module:Class" of the default stage
    pool: str


STEPS = (
    Step("frames", "processing.stages.frames:FramesStage", "decode"),
    Step("scenes", "processing.stages.scenes:ScenesStage", "decode"),
    Step("embed", "processing.stages.embed:EmbedStage", "model"),
    Step("neardup", "processing.stages.neardup:NearDupStage", "neardup"),
    Step("labels", "processing.stages.labels:LabelsStage", "model"),
)
STEP_NAMES = tuple(step.name for step in STEPS)
POOLS = tuple(dict.fromkeys(step.pool for step in STEPS))  # decode, model, neardup


def stage_targets(spec: str = "") -> dict[str, str]:
    """Step name -> "module:Class": the defaults, overridden by ``"name=module:Class,..."``."""
    targets = {step.name: step.stage for step in STEPS}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, sep, target = part.partition("=")
        if not sep or ":" not in target or name.strip() not in STEP_NAMES:
            raise ValueError(f"PROCESSING_STAGES: expected name=module:Class with a name in "
                             f"{STEP_NAMES}, got {part!r}")  # fmt: skip
        targets[name.strip()] = target.strip()
    return targets


def load_stage_class(target: str) -> type[Stage]:
    """Import ``"module:Class"``; a clear ValueError when it is missing or not a Stage."""
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load stage {target!r}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise ValueError(f"stage {target!r} is not a processing.stages.base.Stage")
    return cls
