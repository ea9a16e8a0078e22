"""HandoffPipeline: `scrapy crawl -s KEY_PREFIX=x` puts the stream and ledger under x:, like every other key."""

import shutil
import subprocess

import pytest

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from tests.conftest import PYTHON, ROOT, project_env


@pytest.mark.slow
def test_key_prefix_setting_moves_every_key_the_crawl_writes(tmp_path, media, redis_url, redis_client, data_dir):
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(media["gradio_a"], folder / "a.mp4")
    shutil.copy(media["gradio_b"], folder / "b.mp4")
    shutil.copy(media["gradio_a"], folder / "a copy.mp4")  # the same bytes: a duplicate
    env = project_env(REDIS_URL=redis_url)
    env.pop("KEY_PREFIX", None)  # only the -s setting names the prefix
    cmd = [PYTHON, "-m", "scrapy", "crawl", "local", "-a", f"path={folder}", "-s", "KEY_PREFIX=x",
           "-s", "TELNETCONSOLE_ENABLED=0", "-s", "LOG_LEVEL=INFO"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    keys = RedisKeys("x")
    assert redis_client.xlen(keys.stream) == 3  # two videos, and the byte copy's provenance notice
    assert Ledger(redis_client, keys).counts() == {"queued": 2, "duplicate": 1}
    written = sorted(k.decode() for k in redis_client.keys("*"))
    # the project's keys under x:, scrapy-redis' own under the spider's name; nothing under vp:
    assert [k for k in written if not k.startswith(("x:", "local:"))] == [], written
    assert {keys.stream, keys.ledger, keys.ledger_counts, keys.seen, keys.sha256} <= set(written)
