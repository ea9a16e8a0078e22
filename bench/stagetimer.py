"""Timed stand-ins for the project's processing stages (benchmarks only): same classes, plus a clock.

``PROCESSING_STAGES="frames=bench.stagetimer:TimedFrames,embed=bench.stagetimer:TimedEmbed,..."``
runs the project's own stages, each subclassed so that every ``process_batch`` call appends
``{"stage", "works", "seconds", "pid"}`` as a JSON line to ``$BENCH_STAGE_LOG``.
"""

from __future__ import annotations

import json
import os
import time

from processing.pipeline import STEPS, load_stage_class


def _timed(stage_name: str):
    base = load_stage_class(next(s.stage for s in STEPS if s.name == stage_name))

    def process_batch(self, works):
        start = time.perf_counter()
        out = base.process_batch(self, works)
        seconds = time.perf_counter() - start
        path = os.environ.get("BENCH_STAGE_LOG")
        if path:
            busy = sum(1 for w in works if not w.skip)
            with open(path, "a") as fh:
                fh.write(json.dumps({"stage": stage_name, "works": len(works), "busy_works": busy,
                                     "seconds": seconds, "pid": os.getpid(), "at": time.time()}) + "\n")
        return out

    return type(f"Timed{base.__name__}", (base,), {"process_batch": process_batch, "__module__": __name__})


TimedFrames = _timed("frames")
TimedEmbed = _timed("embed")
TimedNearDup = _timed("neardup")
TimedLabels = _timed("labels")
STAGES_SPEC = ",".join(f"{n}=bench.stagetimer:{c}" for n, c in
                       (("frames", "TimedFrames"), ("embed", "TimedEmbed"),
                        ("neardup", "TimedNearDup"), ("labels", "TimedLabels")))  # fmt: skip
