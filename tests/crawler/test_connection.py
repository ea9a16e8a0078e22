"""The project's Redis: REDIS_URL when set, else the embedded server; outages ridden out, idle servers stop."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import redis

import settings
from crawler.connection import (
    ProjectRedis,
    _alive,
    _read_pid,
    answers,
    ensure_embedded,
    get_redis,
    redis_url,
    stop_embedded,
)


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def outage_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "crawler.connection"]


def test_embedded_server_is_shared_and_persists(data_dir, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    url = redis_url()
    assert url == ensure_embedded(data_dir)  # a second caller finds the running server
    redis.Redis.from_url(url).set("kept", "yes")
    assert stop_embedded(data_dir)
    assert not answers(url)
    url2 = ensure_embedded(data_dir)  # restarted from its append-only file, on the same port
    try:
        assert url2 == url
        assert redis.Redis.from_url(url2).get("kept") == b"yes"
    finally:
        stop_embedded(data_dir)


def test_scrapy_redis_client_follows_redis_url(redis_url):
    client = ProjectRedis(host="ignored", port=1, socket_timeout=5)
    client.set("probe-key", 1)
    assert redis.Redis.from_url(redis_url).get("probe-key") == b"1"


def test_a_killed_embedded_server_comes_back_on_its_port_with_its_data(data_dir, monkeypatch, caplog):
    monkeypatch.delenv("REDIS_URL", raising=False)
    caplog.set_level(logging.INFO, logger="crawler.connection")
    client = get_redis()
    client.set("kept", "yes")
    url = redis_url()
    pid = _read_pid(data_dir / "redis" / "server.pid")
    try:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid))
        assert client.get("kept") == b"yes"  # the client restarted it (same port, from its AOF)
        assert ensure_embedded(data_dir) == url
        assert _read_pid(data_dir / "redis" / "server.pid") != pid
        lines = outage_lines(caplog)
        assert any("restarted" in line for line in lines) and len(lines) <= 3, lines
    finally:
        stop_embedded(data_dir)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_server(port, tmp_path):
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: answers(f"redis://127.0.0.1:{port}/0"))
    return proc


@pytest.mark.faults
def test_a_client_pauses_through_an_external_redis_restart_with_two_log_lines(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="crawler.connection")
    port = _free_port()
    server = _redis_server(port, tmp_path)
    restarted = []
    try:
        client = get_redis(f"redis://127.0.0.1:{port}/0")
        assert client.ping()
        server.terminate()
        server.wait(timeout=10)

        def restart():
            time.sleep(2.0)
            restarted.append(_redis_server(port, tmp_path))

        threading.Thread(target=restart, daemon=True).start()
        start = time.monotonic()
        assert client.incr("after") == 1  # paused until the server is back, then goes on
        assert time.monotonic() - start >= 1.5
        lines = outage_lines(caplog)
        assert len(lines) == 2, lines
        assert "unreachable" in lines[0] and "answers again" in lines[1]
    finally:
        for proc in [server, *restarted]:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.mark.faults
def test_a_client_stops_waiting_after_redis_retry_seconds(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(settings, "REDIS_RETRY_SECONDS", 1.0)
    port = _free_port()  # nothing listens there
    client = get_redis(f"redis://127.0.0.1:{port}/0")
    assert get_redis(f"redis://127.0.0.1:{port}/0", retry_seconds=7).get_connection_kwargs()["retry"].max_seconds == 7
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert 0.9 <= time.monotonic() - start < 10
    lines = outage_lines(caplog)
    assert len(lines) == 2 and "pausing" in lines[0] and "no more waiting" in lines[1], lines
    with pytest.raises(redis.ConnectionError):  # still down: fails at once, no new line
        client.ping()
    assert len(outage_lines(caplog)) == 2


def test_the_embedded_server_stops_itself_when_idle(data_dir):
    root = data_dir / "redis"
    url = ensure_embedded(data_dir, idle_exit=1.0)
    pid = _read_pid(root / "server.pid")
    wait_for(lambda: _read_pid(root / "watchdog.pid"))
    watchdog = _read_pid(root / "watchdog.pid")
    try:
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")  # a client holds a connection: not idle
        time.sleep(2.5)
        assert _alive(pid)
        client.close()
        wait_for(lambda: not _alive(pid) and not _alive(watchdog))
        assert ensure_embedded(data_dir, idle_exit=0) == url  # the next client starts it again
        assert redis.Redis.from_url(url).get("kept") == b"yes"
    finally:
        stop_embedded(data_dir)


def test_the_embedded_server_stops_when_its_folder_is_deleted(data_dir):
    root = data_dir / "redis"
    ensure_embedded(data_dir, idle_exit=0)
    pid = _read_pid(root / "server.pid")
    wait_for(lambda: _read_pid(root / "watchdog.pid"))
    watchdog = _read_pid(root / "watchdog.pid")
    shutil.rmtree(data_dir)
    wait_for(lambda: not _alive(pid) and not _alive(watchdog))


def test_the_aof_fsync_policy_is_a_setting(data_dir, monkeypatch):
    monkeypatch.setattr(settings, "REDIS_APPENDFSYNC", "always")
    url = ensure_embedded(data_dir)
    try:
        assert redis.Redis.from_url(url).config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        stop_embedded(data_dir)
    monkeypatch.setattr(settings, "REDIS_APPENDFSYNC", "sometimes")
    with pytest.raises(ValueError, match="REDIS_APPENDFSYNC"):
        ensure_embedded(data_dir)
