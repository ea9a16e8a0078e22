"""The local Ray that every ``work`` driver on one machine shares: one per DATA_DIR, started on demand, gone when idle.

Why: the near-duplicate index is one named Ray actor that every driver must reach
(processing/runtime/index.py), and drivers that each start a Ray inside themselves cannot
share an actor (each would decide alone: 13 videos indexed instead of 7). Nor can the first
driver's in-process Ray be shared: it ends when that driver ends, under the others' feet.
So, without ``--ray-address``, a driver joins the machine's *keeper*:

- under ``DATA_DIR/ray/`` (an flock on ``lock`` orders everything below) it registers itself
  (``drivers/<pid>-<start time>``), then reads ``cluster.json``: the keeper's pid, start time
  and Ray address. If that keeper is alive it connects there; else it starts one,
  ``python -m processing.runtime.localray DIR``, in a session of its own, and waits for it
  to write the file. Two drivers started at once: the second waits on the lock, then joins.
- the keeper starts Ray sized to this machine (as a lone driver used to: all cores, the GPUs
  given, else those Ray finds; one unit of each placement resource the driver names, so that
  DECODE_RESOURCE / MODEL_RESOURCE / INDEX_RESOURCE work on one machine too), with Ray's own
  token authentication, writes ``cluster.json``, and twice a second
  looks at the registrations (a driver killed with -9 is noticed by its pid and start time
  going away). Once none is alive for ``IDLE_S`` it removes ``cluster.json`` (under the lock:
  no driver can join a Ray that is stopping) and stops Ray. A killed keeper takes its Ray
  with it: it starts the RayReaper watchdog before ``ray.init`` (processing/runtime/reaper.py),
  and the next driver starts a new keeper. A deleted DATA_DIR stops it too.

A driver leaves with ``leave()``: ``ray.shutdown()``, then its registration goes. The keeper's
log is ``DATA_DIR/ray/keeper.log``. ``--ray-address`` (or ``RAY_ADDRESS``) bypasses all this:
a Ray cluster is already shared.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import ray

from processing.runtime.reaper import RayReaper, start_time

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 1.0  # the keeper stops Ray once no registered driver has been alive this long
POLL_S = 0.5
START_TIMEOUT_S = 300.0  # a keeper's Ray must be up by then (seconds on a loaded 2-core machine)
CLUSTER = "cluster.json"

_joined: list[Path] = []  # the ray dir this process joined (at most one)


def ray_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "ray"


def _tag(pid: int) -> str:
    return f"{pid}-{start_time(pid)}"


def _alive(tag: str) -> bool:
    pid, _, started = tag.partition("-")
    return pid.isdigit() and str(start_time(int(pid))) == started


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def running(folder: Path) -> dict | None:
    """The record of the live keeper of ``folder`` (pid, start time, address), or None."""
    try:
        info = json.loads((folder / CLUSTER).read_text())
    except (OSError, ValueError):
        return None
    return info if _alive(info.get("keeper", "")) else None


def joined() -> bool:
    """True while this process is connected to a keeper's Ray."""
    return bool(_joined)


def join(data_dir: str | Path, *, num_gpus: int | None = None, resources: list[str] = (), dashboard: bool = False,
         log_to_driver: bool = False, timeout_s: float = START_TIMEOUT_S) -> dict:  # fmt: skip
    """Connect this process to the machine's shared local Ray of ``data_dir``, starting its
    keeper if none runs (``num_gpus`` None: the GPUs Ray finds; ``resources``: custom resource
    names it offers); returns the keeper's record."""
    folder = ray_dir(data_dir)
    (folder / "drivers").mkdir(parents=True, exist_ok=True)
    me = folder / "drivers" / _tag(os.getpid())
    with _locked(folder):
        me.touch()
        try:
            info = running(folder) or _start_keeper(folder, num_gpus, resources, dashboard, timeout_s)
        except BaseException:
            me.unlink(missing_ok=True)
            raise
    try:
        _connect(info["address"], log_to_driver)
    except BaseException:
        me.unlink(missing_ok=True)
        raise
    _joined.append(folder)
    log.info("joined the local Ray at %s (keeper %s)", info["address"], info["keeper"])
    return info


def leave() -> None:
    """Disconnect from the keeper's Ray and unregister (the keeper stops Ray once idle)."""
    try:
        ray.shutdown()
    finally:
        while _joined:
            (_joined.pop() / "drivers" / _tag(os.getpid())).unlink(missing_ok=True)


def _start_keeper(folder: Path, num_gpus: int | None, resources: list[str], dashboard: bool, timeout_s: float) -> dict:
    (folder / CLUSTER).unlink(missing_ok=True)  # a dead keeper's
    cmd = [sys.executable, "-m", "processing.runtime.localray", str(folder)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    for name in resources:
        cmd += ["--resource", name]
    if dashboard:
        cmd.append("--dashboard")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with open(folder / "keeper.log", "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while True:
        info = running(folder)
        if info and info["keeper"].startswith(f"{proc.pid}-"):
            return info
        if proc.poll() is not None:
            tail = (folder / "keeper.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the local Ray could not start (exit {proc.returncode}): {tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"the local Ray was not up after {timeout_s:.0f} s (see {folder / 'keeper.log'})")
        time.sleep(0.1)


def _connect(address: str, log_to_driver: bool) -> None:
    _use_token_auth()
    ray.init(address=address, log_to_driver=log_to_driver, logging_level=logging.WARNING)


def _use_token_auth() -> None:
    """Ray starts a local cluster with token authentication (the token in ``~/.ray/auth_token``,
    which this user's processes share); a process joining it by address must turn token mode
    on first, as Ray does itself for a cluster it finds on its own."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        quiet.setLevel(level)


# -- the keeper -------------------------------------------------------------------------------------
def keep(folder: Path, num_gpus: int | None, dashboard: bool, resources: list[str] = ()) -> int:
    """The keeper's life: start Ray, publish its address, stop it once no driver is left."""
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(1))
    reaper = RayReaper.start()  # before ray.init: a killed keeper takes its Ray along
    try:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, num_gpus=num_gpus,
                 resources={name: 1.0 for name in resources} or None, include_dashboard=dashboard,
                 log_to_driver=False, logging_level=logging.WARNING)  # fmt: skip
        if reaper:
            reaper.note()
        info = {"keeper": _tag(os.getpid()), "address": ray.get_runtime_context().gcs_address,
                "num_cpus": os.cpu_count() or 1, "num_gpus": int(ray.cluster_resources().get("GPU", 0))}  # fmt: skip
        tmp = folder / (CLUSTER + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, folder / CLUSTER)
        idle_since = None
        while not stop:
            time.sleep(POLL_S)
            try:
                with _locked(folder):
                    if running(folder) != info:
                        break  # the folder was removed or taken over
                    drivers = list((folder / "drivers").iterdir())
                    for path in drivers:
                        if not _alive(path.name):
                            path.unlink(missing_ok=True)  # a killed driver
                    if any(_alive(p.name) for p in drivers):
                        idle_since = None
                        continue
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= IDLE_S:
                        (folder / CLUSTER).unlink(missing_ok=True)
                        break
            except FileNotFoundError:
                break  # DATA_DIR is gone
        return 0
    finally:
        try:
            ray.shutdown()
        finally:
            if reaper:
                reaper.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m processing.runtime.localray", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--num-gpus", type=int, default=None, help="default: the GPUs Ray finds")
    parser.add_argument("--resource", action="append", default=[], help="a custom resource to offer (1 unit)")
    parser.add_argument("--dashboard", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return keep(args.folder, args.num_gpus, args.dashboard, args.resource)


if __name__ == "__main__":
    sys.exit(main())
