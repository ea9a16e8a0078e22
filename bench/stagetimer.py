"""Timed stand-ins for the project's processing stages (benchmarks only): same classes, plus a clock.

``PROCESSING_STAGES=STAGES_SPEC`` (``"frames=bench.stagetimer:TimedFramesStage,..."``, every step)
runs the project's own stages, each subclassed so that every ``process_batch`` call appends
``{"stage", "works", "busy_works", "seconds", "cpu_seconds", "pid", "at"}`` as a JSON line to ``$BENCH_STAGE_LOG``.
"""

from __future__ import annotations

import json
import os
import time

from processing.pipeline import STEPS, load_stage_class


def _timed(stage_name: str):
    base = load_stage_class(next(s.stage for s in STEPS if s.name == stage_name))

    def process_batch(self, works):
        start, cpu = time.perf_counter(), time.process_time()
        out = base.process_batch(self, works)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        path = os.environ.get("BENCH_STAGE_LOG")
        if path:
            busy = sum(1 for w in works if not w.skip)
            with open(path, "a") as fh:
                fh.write(json.dumps({"stage": stage_name, "works": len(works), "busy_works": busy,
                                     "seconds": seconds, "cpu_seconds": cpu, "pid": os.getpid(),
                                     "at": time.time()}) + "\n")  # fmt: skip
        return out

    return type(f"Timed{base.__name__}", (base,), {"process_batch": process_batch, "__module__": __name__})


# One timed class per step of processing/pipeline.py (TimedFrames, TimedScenes, TimedEmbed...),
# so a step added to the pipeline is timed too.
TIMED = {step.name: _timed(step.name) for step in STEPS}
globals().update({cls.__name__: cls for cls in TIMED.values()})
STAGES_SPEC = ",".join(f"{name}=bench.stagetimer:{cls.__name__}" for name, cls in TIMED.items())
