"""noida-db, an Elasticsearch-API emulator (it is not Elasticsearch), run for the catalogue's live tests.

noida-db (PyPI, pinned in requirements-dev.txt) is one binary that answers Elasticsearch's REST
API (dense_vector/knn, index templates, aliases, reindex, a 1 s refresh interval) and reports
version 8.15.3. The tests start it with only that API enabled, on a free loopback port, with
its data in a temporary folder, and stop it at the end of the session.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def _binary() -> Path:
    try:
        from importlib.resources import files

        path = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        pytest.fail("noida-db is not installed: run `make setup` (it is in requirements-dev.txt)")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EsEmulator:
    """One noida-db process serving only its Elasticsearch API on 127.0.0.1."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.data_dir / "noida-db.log", "wb")
        self.proc = subprocess.Popen(
            [str(_binary()), "start", "--only", "elasticsearch", "--elasticsearch-port", str(port),
             "--host", "127.0.0.1", "--data-dir", str(self.data_dir / "data")],
            cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as resp:
                    self.version = json.loads(resp.read())["version"]["number"]
                return self.url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"noida-db did not start on {self.url}: {self.log()}")
                time.sleep(0.1)

    def log(self) -> str:
        path = self.data_dir / "noida-db.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def es_emulator(tmp_path_factory):
    """The base URL of a noida-db Elasticsearch-API emulator, for the whole session."""
    emulator = EsEmulator(tmp_path_factory.mktemp("noida-db"))
    yield emulator.start()
    emulator.stop()
