"""Hostile input in a local folder: `scrapy crawl local` with the project's pipelines records every file once.

The cases of tests/hostile.py (bad files, good clips under hostile names, names that are not
UTF-8) plus what only a folder has (symlinks in and out of it, a dangling one, a FIFO), in one
real crawl with real Redis: each file ends in exactly one ledger record with a documented
code, the good clips are all queued, the FIFO is never opened, nothing outside the folder is
read, and the feed and the stream carry non-UTF-8 names byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from crawler.errors import is_known
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.items import VideoItem
from tests.conftest import PYTHON, ROOT, project_env
from tests.hostile import ONE_OF_TWO, build, local_only
from tests.site import Site

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _utf8(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def crawl_folder(tmp_path: Path, folder: Path, *args: str) -> tuple[list[dict], str]:
    feed, log = tmp_path / "local.jsonl", tmp_path / "local.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", "local", "-a", f"path={folder}", *args, "-O", str(feed),
           "-s", "TELNETCONSOLE_ENABLED=0", "-s", "LOG_LEVEL=INFO", "-s", f"LOG_FILE={log}",
           "-s", "MEDIA_MIN_WIDTH=200", "-s", "MEDIA_TIMEOUT=20"]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=300)
    text = log.read_text(errors="replace") if log.exists() else ""
    assert done.returncode == 0, done.stderr[-3000:] + text[-3000:]
    return [json.loads(line) for line in feed.read_bytes().splitlines() if line.strip()], text


def test_every_file_of_a_hostile_folder_ends_in_one_record(tmp_path, redis_url, redis_client, key_prefix, data_dir):
    internal = Site()
    internal_url = internal.start()
    try:
        folder = tmp_path / "folder"
        cases = build(folder, internal=internal_url, work=tmp_path / "work")
        cases += local_only(folder, tmp_path / "outside")
        items, log = crawl_folder(tmp_path, folder)
    finally:
        internal.stop()
    assert internal.hits == [], f"a file made the crawl reach another host: {internal.hits}"

    expected = {(folder / c.name).as_uri(): c for c in cases}
    ledger = Ledger(redis_client, key_prefix)
    recorded = dict(ledger.entries())
    assert set(recorded) == set(expected), sorted(set(recorded) ^ set(expected))
    assert sum(ledger.counts().values()) == len(cases)
    feed = {row["url"]: row for row in items}
    assert set(feed) == set(expected)
    wrong, pair = {}, []
    for url, case in expected.items():
        entry = recorded[url]
        got = (entry["status"], entry["stage"], (entry["error"] or "").split(":")[0] or None)
        if case.local == ONE_OF_TWO:
            pair.append(entry["status"])
        elif got != case.local or feed[url]["status"] != case.local[0]:
            wrong[case.what] = (got, feed[url]["errors"])
        if entry["error"]:
            assert is_known(got[2]) and got[2] != "internal_error", (case.what, entry)
    assert not wrong, wrong
    assert sorted(pair) == ["duplicate", "queued"]

    # names that are not UTF-8 keep their bytes: in the feed, on the stream, on disk
    odd = [c for c in cases if not _utf8(c.name)]
    assert len(odd) >= 3
    stream = [VideoItem.from_json(e[b"item"]) for _, e in redis_client.xrange(RedisKeys(key_prefix).stream)]
    by_url = {item.url: item for item in stream}
    for case in odd:
        url = (folder / case.name).as_uri()
        assert os.fsencode(feed[url]["path"]) == os.fsencode(folder / case.name)
        if case.good:
            assert Path(by_url[url].path).read_bytes() == (folder / case.name).read_bytes()
            assert "\\x" in feed[url]["title"]  # shown as \xNN, never a crash
    good = [url for url, case in expected.items() if case.local[0] == "queued"]
    assert len(good) >= 18 and all(url in by_url for url in good)
    assert "Traceback" not in log, log[-4000:]
    print(f"hostile local files: {len(cases)}; codes: {sorted({c.local[2] for c in cases if c.local[2]})}")


def test_file_symlinks_out_of_the_folder_are_followed_only_when_asked(tmp_path, media, redis_url, redis_client,
                                                                     key_prefix, data_dir):  # fmt: skip
    folder = tmp_path / "videos"
    folder.mkdir()
    (tmp_path / "outside.mp4").write_bytes(media["bikes"].read_bytes())
    (folder / "outside-link.mp4").symlink_to(tmp_path / "outside.mp4")
    items, _ = crawl_folder(tmp_path, folder)
    assert [(i["status"], i["errors"]) for i in items] == [("rejected", {"crawl": "outside_root: a symlink out of "
                                                                         "the crawled folder"})]  # fmt: skip
    items, _ = crawl_folder(tmp_path, folder, "-a", "follow_symlinks=1", "-s", "SCHEDULER_FLUSH_ON_START=1")
    assert [(i["status"], Path(i["path"]).name) for i in items] == [("queued", "outside-link.mp4")]
