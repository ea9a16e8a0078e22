"""Shared fixtures: real Redis (a spare db, flushed), the embedded server, media files, env.

Redis: the machine's server at ``TEST_REDIS_URL`` when one answers there, else one embedded
Valkey (crawler/connection.py) for the whole session, in a temp dir, stopped at the end; so
``make test`` needs nothing listening on 6379.
"""

import os
import sys
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
# The machine's Redis; tests own db 13 and flush it before and after each test that uses it.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# Read before any test runs: the real Elasticsearch a user pointed the suite at, for the tests
# that ask for it (tests/processing/catalogue); every other test runs with it cleared.
LIVE_ELASTICSEARCH_URL = os.environ.get("ELASTICSEARCH_URL", "")


@pytest.fixture(autouse=True)
def no_live_elasticsearch(monkeypatch):
    """ELASTICSEARCH_URL cleared for this process (settings) and its subprocesses (env)."""
    import settings

    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.setattr(settings, "ELASTICSEARCH_URL", "")



@pytest.fixture(scope="session")
def test_redis_server(tmp_path_factory):
    """The URL of the session's Redis: TEST_REDIS_URL if it answers, else an embedded server."""
    from crawler.connection import answers, ensure_embedded, stop_embedded

    if answers(TEST_REDIS_URL):
        yield TEST_REDIS_URL
        return
    root = tmp_path_factory.mktemp("embedded-redis")
    url = ensure_embedded(root)
    try:
        yield url
    finally:
        stop_embedded(root)


@pytest.fixture
def redis_url(test_redis_server, monkeypatch):
    """A real Redis: an empty spare db, REDIS_URL pointing at it (also for subprocesses)."""
    client = redis.Redis.from_url(test_redis_server)
    client.flushdb()
    monkeypatch.setenv("REDIS_URL", test_redis_server)
    yield test_redis_server
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A fresh DATA_DIR for this test, for this process (settings) and subprocesses (env)."""
    import settings

    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("DATA_DIR", str(path))
    monkeypatch.setattr(settings, "DATA_DIR", str(path))
    monkeypatch.setattr(settings, "FILES_STORE", str(path / "videos"))
    monkeypatch.setattr(settings, "CATALOGUE_PATH", str(path / "catalogue.sqlite"))
    return path


@pytest.fixture
def embedded_redis(data_dir, monkeypatch):
    """The embedded server of a fresh data dir, REDIS_URL unset; stopped afterwards."""
    from crawler.connection import ensure_embedded, stop_embedded

    monkeypatch.delenv("REDIS_URL", raising=False)
    url = ensure_embedded(data_dir)
    yield url
    stop_embedded(data_dir)


@pytest.fixture
def key_prefix(monkeypatch):
    """A unique KEY_PREFIX for this test (settings and subprocesses); names: RedisKeys(prefix)."""
    import settings

    prefix = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KEY_PREFIX", prefix)
    monkeypatch.setattr(settings, "KEY_PREFIX", prefix)
    return prefix


@pytest.fixture(scope="session")
def media():
    """The real clips in tests/data (see tests/data/LICENSES.md)."""
    return {p.stem: p for p in DATA.glob("*.mp4")}


def project_env(**extra) -> dict:
    """Environment for a subprocess of the project (scrapy, python -m processing)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("ALLOW_PRIVATE_NETWORKS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env


PYTHON = sys.executable
from tests.site import site  # noqa: E402,F401  (the local HTTP test site fixture)
from tests.objectstore import buckets, gcs, gcs_server, moto_endpoint, s3  # noqa: E402,F401  (stand-ins)
