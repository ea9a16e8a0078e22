"""Run every benchmark as a subprocess (--json), collect each one's last JSON line, print one table.

``make bench`` runs ``bench/run_all.py --quick``. Scripts run one after another (parallel runs
would skew each other's timings on a small machine), each within its share of a total time
budget; a script that crashes, times out or prints no JSON still gets a row saying so.
Results go to ``bench/results/summary{-quick}.json`` and ``.md`` as well as stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PYTHON, RESULTS, ROOT, cpu_info, fmt, fmt_met, project_env, render_table  # noqa: E402

BENCH_DIR = ROOT / "bench"
# Order and the most seconds each may take under --quick (the full run gets 6x as long).
SCRIPTS = {"media": 60, "dedup": 130, "embed": 120, "labels": 90, "index": 90, "decide": 60, "crawl": 70, "ingest": 90, "scale": 75, "e2e": 240}
HELPERS = {"__init__", "common", "run_all", "crawlprobe", "stagetimer", "labelset", "v2dstyle"}  # modules that are not benchmarks
HEADER = ["bench", "target name", "value", "baseline", "target", "met"]


def discover(only: list[str] | None = None) -> list[str]:
    """The benchmark scripts present, in the fixed order, then any others alphabetically."""
    present = {p.stem for p in BENCH_DIR.glob("*.py")} - HELPERS
    names = [n for n in SCRIPTS if n in present] + sorted(present - set(SCRIPTS))
    return [n for n in names if not only or n in only]


def last_json(stdout: str) -> dict | None:
    """The last line of ``stdout`` that is a JSON object with "targets"."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "targets" in data:
                return data
    return None


def run_one(name: str, quick: bool, timeout: float) -> dict:
    """Run ``bench/<name>.py --json [--quick]``; always returns a result dict with targets."""
    cmd = [PYTHON, str(BENCH_DIR / f"{name}.py"), "--json"] + (["--quick"] if quick else [])
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS / f"{name}.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=project_env(), stdout=subprocess.PIPE,
                                stderr=log, text=True, start_new_session=True)  # fmt: skip
        try:
            stdout, _ = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            stdout = _stop(proc)
    seconds = time.perf_counter() - start
    data = last_json(stdout or "")
    if data is None:
        why = f"timed out after {timeout:.0f} s" if timed_out else f"no JSON line (exit code {proc.returncode})"
        data = {"bench": name, "targets": [{"name": "(whole script)", "value": None, "baseline": None,
                "target": "", "met": None, "unit": "", "note": f"not measured: {why}; see {log_path}"}],
                "error": why}  # fmt: skip
    data["wall_seconds"] = round(seconds, 1)
    return data


def _stop(proc: subprocess.Popen) -> str:
    """Stop a timed-out script and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            stdout, _ = proc.communicate(timeout=wait)
            return stdout or ""
        except subprocess.TimeoutExpired:
            continue
    return ""


def rows_of(results: list[dict]) -> list[tuple]:
    rows = []
    for res in results:
        for t in res.get("targets", []):
            rows.append((res.get("bench", "?"), t["name"], fmt(t["value"], t.get("unit", "")),
                         fmt(t["baseline"], t.get("unit", "")), t.get("target", ""), fmt_met(t["met"])))  # fmt: skip
    return rows


def notes_of(results: list[dict]) -> list[str]:
    lines = []
    for res in results:
        name = res.get("bench", "?")
        for t in res.get("targets", []):
            if t.get("note"):
                lines.append(f"{name} / {t['name']}: {t['note']}")
        if res.get("error"):
            lines.append(f"{name}: error: {res['error']}")
        lines += [f"{name}: {n}" for n in res.get("notes", [])]
    return lines


def labels_table(results: list[dict]) -> str | None:
    """bench/labels.py's per-labeler precision / recall / time, as a table of its own."""
    res = next((r for r in results if r.get("bench") == "labels"), None)
    scores = (res or {}).get("figures", {}).get("scores")
    if not scores:
        return None
    ms = res["figures"].get("ms_per_video", {})

    def f(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    rows = [(name, f(s.get("precision")), f(s.get("recall")), f(s.get("tp")), f(s.get("fp")), f(s.get("fn")),
             f(s.get("tn")), f"{ms[name]:.0f}" if name in ms else "") for name, s in scores.items()]  # fmt: skip
    header = f"labels: precision / recall per labeler on {res['figures'].get('clips')} clips (bench/labelset.py)\n"
    return header + render_table(["labeler", "precision", "recall", "TP", "FP", "FN", "TN", "ms/video"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (make bench)")
    parser.add_argument("--json", action="store_true", help="print the summary as the last line")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks (names, e.g. dedup)")
    parser.add_argument("--budget", type=float, default=None,
                        help="total seconds for all scripts (default 570 with --quick)")  # fmt: skip
    args = parser.parse_args(argv)
    budget = args.budget or (570.0 if args.quick else 6 * 570.0)
    scale = 1 if args.quick else 6
    names = discover(args.only)
    started = time.perf_counter()
    results = []
    for name in names:
        left = budget - (time.perf_counter() - started)
        timeout = max(5.0, min(SCRIPTS.get(name, 90) * scale, left))
        print(f"[bench] {name} (up to {timeout:.0f} s) ...", file=sys.stderr, flush=True)
        res = run_one(name, args.quick, timeout)
        print(f"[bench] {name} done in {res['wall_seconds']} s", file=sys.stderr, flush=True)
        results.append(res)
    total = time.perf_counter() - started
    machine = cpu_info()
    table = render_table(HEADER, rows_of(results))
    notes = notes_of(results)
    print(table)
    labels = labels_table(results)
    if labels:
        print("\n" + labels)
    if notes:
        print("\nnotes:")
        print("\n".join(f"- {n}" for n in notes))
    print(f"\n{len(names)} benchmarks in {total:.0f} s on {machine['nproc']} cores "
          f"({machine['cpu']}, {machine['ram_gib']} GiB)")  # fmt: skip
    summary = {"quick": args.quick, "seconds": round(total, 1), "machine": machine, "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"summary{suffix}.json").write_text(json.dumps(summary, indent=2, default=str))
    (RESULTS / f"summary{suffix}.md").write_text(table + "\n\n" + (labels + "\n\n" if labels else "")
                                                 + "\n".join(f"- {n}" for n in notes) + "\n")  # fmt: skip
    if args.json:
        print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
