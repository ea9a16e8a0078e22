"""The local Ray a driver starts dies with that driver, however it ends (kill -9 included).

``ray.init()`` starts gcs_server, raylet, the monitors and, under raylet, Ray's agents, all
descendants of the driver. gcs_server and raylet die with a killed driver, but
``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` do not (measured with Ray 2.60: they
outlived every ``kill -9`` of the worker). So a driver that starts a local Ray also starts a
``RayReaper``: a small watchdog process (``python -m processing.runtime.reaper <pid>``) in a
session of its own, so that a signal to the driver's process group does not reach it. While
the driver lives, the watchdog notes the driver's Ray descendants (from /proc, by pid and
start time) twice a second, and the driver tells it about them once Ray is up; as soon as
the driver is gone (its pipe to the watchdog closes, or its pid is no longer that process),
the watchdog sends SIGTERM to every noted process still alive, SIGKILL two seconds later,
and exits. A recycled pid is never hit: a process is signalled only while its start time is
the noted one.

Why a watchdog rather than reaping at the next start: there may be no next start on that
machine (a scaled-down node, a test run), and the agents hold memory and ports meanwhile.
The watchdog is stdlib-only and needs Linux' /proc; elsewhere ``RayReaper.start`` logs that
it cannot watch and returns None.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SCAN_EVERY_S = 0.5
KILL_GRACE_S = 2.0


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])  # a zombie is as good as gone


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _ray_dir() -> str | None:
    spec = importlib.util.find_spec("ray")  # found, not imported: the watchdog stays small
    return str(Path(spec.origin).parent) + os.sep if spec and spec.origin else None


RAY_DIR = _ray_dir()


def is_ray_process(pid: int) -> bool:
    """True for a process of Ray: a title Ray gave it (``ray::DashboardAgent``), or one of
    Ray's binaries or scripts (gcs_server, raylet, dashboard, monitors) among its first words."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode("utf-8", "replace") for a in args[:3]]
    if words and words[0].startswith("ray::"):
        return True
    return bool(RAY_DIR) and any(w.startswith(RAY_DIR) for w in words)


def ray_descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of the Ray processes below process ``root`` (children, theirs...)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        started = start_time(pid)
        if started is not None and pid != os.getpid() and is_ray_process(pid):
            out[pid] = started
    return out


def reap(processes: dict[int, int], grace_s: float = KILL_GRACE_S) -> list[int]:
    """SIGTERM the processes still alive (same start time), SIGKILL them after ``grace_s``;
    returns the pids that had to be signalled."""
    alive = [p for p, t in processes.items() if start_time(p) == t]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 1.0)
        while time.monotonic() < deadline and any(start_time(p) == processes[p] for p in alive):
            time.sleep(0.05)
        if not any(start_time(p) == processes[p] for p in alive):
            break
    return alive


class RayReaper:
    """The driver's handle on its watchdog (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls) -> RayReaper | None:
        """Start the watchdog of this process's Ray; None where /proc is missing."""
        if not Path("/proc/self/stat").exists():
            log.warning("no /proc: Ray's processes cannot be watched and may outlive a killed driver")
            return None
        proc = subprocess.Popen([sys.executable, "-m", "processing.runtime.reaper", str(os.getpid()),
                                 str(start_time(os.getpid()))],
                                stdin=subprocess.PIPE, cwd=ROOT, start_new_session=True)  # fmt: skip
        return cls(proc)

    def note(self) -> None:
        """Tell the watchdog about this driver's Ray processes now (call once Ray is up)."""
        try:
            self.proc.stdin.write((json.dumps(ray_descendants(os.getpid())) + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            log.warning("Ray's watchdog is gone; Ray may outlive a killed driver")

    def close(self, timeout_s: float = 10.0) -> None:
        """The driver is done with Ray: the watchdog reaps what ``ray.shutdown`` left, and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def watch(driver: int, driver_started: int | None, channel=sys.stdin.buffer) -> int:
    """The watchdog's loop: note the driver's Ray processes until it is gone, then reap them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver is not for us
    noted: dict[int, int] = {}
    fd = channel.fileno()
    buffer = b""
    while start_time(driver) == driver_started:
        noted.update(ray_descendants(driver))
        ready, _, _ = select.select([fd], [], [], SCAN_EVERY_S)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break  # the driver closed the pipe (done) or died (the kernel closed it)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            noted.update({int(p): int(t) for p, t in json.loads(line).items()})
    reap(noted)
    return 0


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1]), int(sys.argv[2]) if sys.argv[2] != "None" else None))
