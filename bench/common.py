"""Shared benchmark harness: flags, timing, medians, ratios and the targets table / JSON line.

Every script under ``bench/`` follows one shape::

    from bench.common import Report, parse_args, timed

    def main(report: Report, args) -> None:
        ...
        report.target("lookups/s at 1M", value=2500, baseline=190, target=">= 2000",
                      met=value >= 2000, unit="q/s")

    if __name__ == "__main__":
        run(main, "index", "what it measures")

``run`` parses ``--quick`` / ``--json``, calls ``main``, and prints a human table; with
``--json`` the LAST line of stdout is one JSON object (``Report.to_dict``) holding
``"targets"``: a list of ``{"name", "value", "baseline", "target", "met", "unit", "note"}``.
A part that could not be measured is a target with ``value: null`` and ``met: null`` and a
``note`` beginning ``"not measured: "``; a crash in ``main`` still prints the JSON line, with
``"error"`` set, so the runner always has something to show.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"  # gitignored: caches (the dedup set) and last results
PYTHON = sys.executable
# Benchmarks own this spare db of the machine's Redis (tests own 13); flushed before and after.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


# -- timing -------------------------------------------------------------------------------
def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def timed(fn: Callable, *args, repeat: int = 5, warmup: int = 1, **kwargs) -> tuple[float, Any]:
    """Median wall seconds of ``fn(*args, **kwargs)`` over ``repeat`` runs, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn(*args, **kwargs)
    samples = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int = 5) -> dict[str, float]:
    """Median seconds of each callable, run alternately (A B A B...) so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux /proc), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# -- results ------------------------------------------------------------------------------
@dataclass
class Target:
    """One row: the project's figure, the baseline's figure from the same run, the goal."""

    name: str
    value: float | None
    baseline: float | None
    target: str
    met: bool | None
    unit: str = ""
    note: str = ""


@dataclass
class Report:
    """What one benchmark script found; printed as a table and, with --json, one JSON line."""

    bench: str
    quick: bool = False
    targets: list[Target] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # every other measured number
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None

    def target(self, name, value, baseline, target, met=None, unit="", note="") -> Target:
        row = Target(name, _num(value), _num(baseline), target,
                     None if met is None else bool(met), unit, note)  # fmt: skip
        self.targets.append(row)
        return row

    def not_measured(self, name: str, why: str, target: str = "", baseline=None, unit="") -> Target:
        """A target this run could not measure; never a made-up figure."""
        return self.target(name, None, baseline, target, None, unit, f"not measured: {why}")

    def figure(self, key: str, value: Any) -> None:
        self.figures[key] = _num(value) if isinstance(value, float) else value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "quick": self.quick, "seconds": _num(self.seconds),
                "targets": [asdict(t) for t in self.targets], "figures": self.figures,
                "notes": self.notes, "error": self.error}  # fmt: skip

    def table(self) -> str:
        rows = [(self.bench, t.name, fmt(t.value, t.unit), fmt(t.baseline, t.unit), t.target,
                 fmt_met(t.met), t.note) for t in self.targets]  # fmt: skip
        return render_table(["bench", "target name", "value", "baseline", "target", "met", "note"], rows)


def _num(value):
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 1000 else round(value, 1)
    return value


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".strip()


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "n/a"}[met]


def render_table(header: list[str], rows: list[tuple]) -> str:
    """A plain-text table (also valid Markdown) with columns padded to fit."""
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def parse_args(description: str, argv=None, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for `make bench`")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def run(main: Callable[[Report, argparse.Namespace], None], bench: str, description: str,
        argv=None, extra=None) -> Report:  # fmt: skip
    """Parse flags, run ``main(report, args)``, print the table and (``--json``) the JSON line.

    Exceptions in ``main`` are caught and reported (``error``), so a broken part of the project
    shows up as a row in the runner's table rather than as a missing script.
    """
    args = parse_args(description, argv, extra)
    report = Report(bench=bench, quick=args.quick)
    report.figure("loadavg_at_start", round(os.getloadavg()[0], 2))  # other work on the machine
    start = time.perf_counter()
    try:
        main(report, args)
    except Exception as exc:  # noqa: BLE001 - the report must still come out
        traceback.print_exc(file=sys.stderr)
        report.error = f"{type(exc).__name__}: {exc}"[:500]
    report.seconds = time.perf_counter() - start
    print(report.table())
    for note in report.notes:
        print(f"  note: {note}")
    if report.error:
        print(f"  error: {report.error}")
    save(report)
    if args.json:
        print(json.dumps(report.to_dict(), default=str), flush=True)
    return report


def save(report: Report) -> None:
    try:
        RESULTS.mkdir(parents=True, exist_ok=True)
        suffix = "-quick" if report.quick else ""
        path = RESULTS / f"{report.bench}{suffix}.json"
        path.write_text(json.dumps(report.to_dict(), indent=2, default=str))
    except OSError:
        pass


# -- processes and services ---------------------------------------------------------------
def project_env(**extra) -> dict[str, str]:
    """Environment for a subprocess of the project (scrapy, python -m processing)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("ALLOW_PRIVATE_NETWORKS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a server the benchmark started: ``sig``, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


class LoopbackServer:
    """A server process a benchmark starts on a free loopback port and stops: ``argv`` with
    ``{port}`` where the port goes; ``what`` names it when it does not start."""

    def __init__(self, argv: list[str], what: str, *, env: dict | None = None, cwd=None,
                 stop_signal: int = signal.SIGTERM, start_timeout: float = 20.0):  # fmt: skip
        self.port, self.stop_signal = free_port(), stop_signal
        self.proc = subprocess.Popen([a.format(port=self.port) for a in argv], cwd=cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        if not wait_port(self.port, start_timeout):
            self.stop()
            raise RuntimeError(f"{what} did not start")
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc, self.stop_signal)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def bench_redis(url: str = BENCH_REDIS_URL):
    """A client for the benchmarks' spare Redis db, flushed; raises if no Redis answers."""
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    client.flushdb()
    return client


def cpu_info() -> dict[str, Any]:
    """The machine, for the results: cores, CPU model, RAM."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal:"))  # fmt: skip
    except (OSError, StopIteration):
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(mem_kb / 1024 / 1024, 1)}
