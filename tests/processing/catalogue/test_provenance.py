"""Every place a video was found stays on record: byte copies at other URLs and paths, near-duplicates.

A real crawl (the local test site and a folder, Scrapy with every pipeline, a real Redis) finds
the same bytes at two URLs of two pages with different licences, and at a local path, plus a
re-encode in the folder; real workers (Ray) index it. Then a user asks ``duplicates <prefix>``
and exports, and sees every place with its page, source and licence.
"""

import hashlib
import json
import shutil
import subprocess

import pytest

from crawler.keys import RedisKeys
from crawler.provenance import CopyBook
from tests.conftest import DATA, PYTHON, ROOT, project_env

pytestmark = pytest.mark.slow


def run(args, env, timeout=400, ok=True):
    proc = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def feed(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_duplicates_and_the_export_list_every_url_and_path_with_page_source_and_licence(
    tmp_path, site, redis_client, data_dir, key_prefix
):
    env = project_env(DATA_DIR=data_dir, KEY_PREFIX=key_prefix, LABELERS="", PROCESSING_NUM_WORKERS=1,
                      DOWNLOAD_TIMEOUT=10, RETRY_TIMES=0)  # fmt: skip
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(DATA / "bikes.mp4", folder / "bikes-local.mp4")  # the same bytes at a path
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(DATA / "bikes.mp4"), "-c:v", "libx264", "-crf", "35",
                    "-an", str(folder / "bikes_crf35.mp4")], check=True, timeout=120)  # a near-duplicate
    # two pages: /media/bikes.mp4 (no licence) and /media/bikes.mp4?variant=cc (CC BY-SA 4.0): same bytes
    for page in ("source-tag.html", "license.html"):
        redis_client.rpush("web:start_urls", json.dumps({"url": f"{site}/{page}", "meta": {"depth": 0}}))
    run(["-m", "scrapy", "crawl", "web", "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=3", "-O", str(tmp_path / "web.jsonl"),
         "-s", f"LOG_FILE={tmp_path / 'web.log'}"], env)  # fmt: skip
    run(["-m", "scrapy", "crawl", "local", "-a", f"path={folder}", "-O", str(tmp_path / "local.jsonl"),
         "-s", f"LOG_FILE={tmp_path / 'local.log'}"], env)  # fmt: skip
    items = feed(tmp_path / "web.jsonl") + feed(tmp_path / "local.jsonl")
    bikes = hashlib.sha256((DATA / "bikes.mp4").read_bytes()).hexdigest()
    copies = sorted(i["url"] for i in items if i["video_id"] == bikes)
    plain, cc = f"{site}/media/bikes.mp4", f"{site}/media/bikes.mp4?variant=cc"
    local = (folder / "bikes-local.mp4").as_uri()
    places = sorted([plain, cc, local])
    assert copies == places, items
    assert [i["status"] for i in items if i["video_id"] == bikes].count("duplicate") == 2
    assert {i["url"]: i["license_id"] for i in items if i["video_id"] == bikes} == {
        plain: "unknown", cc: "CC-BY-SA-4.0", local: "unknown"}  # normalised at the crawl
    # the crawl's dedup recorded both byte copies under the canonical's id
    book = CopyBook(redis_client, RedisKeys(key_prefix)).entries(bikes)
    assert len(book) == 2 and all(e["kind"] == "exact" and e["video_id"] == bikes for e in book)

    out = run(["-m", "processing", "work", "--until-empty", "--no-progress"], env).stdout
    assert "processed 2 videos" in out and "duplicate 1, indexed 1" in out, out  # byte copies: no processing

    # `duplicates` with the 16 characters `search` prints: every place, with page, source and licence
    text = run(["-m", "processing", "duplicates", bikes[:16]], env).stdout
    for url in places:
        assert url in text, text
    assert f"page {site}/license.html" in text
    assert "CC-BY-SA-4.0 (https://creativecommons.org/licenses/by-sa/4.0/)" in text  # the id and the raw value
    assert "source=local" in text and "source=web" in text and "bikes_crf35.mp4" in text
    assert "4 place(s): 2 video(s), 2 byte-identical copies" in text, text
    cluster = json.loads(run(["-m", "processing", "duplicates", bikes[:10], "--json"], env).stdout)
    canonical = cluster["canonical"]
    everywhere = sorted([canonical["url"], *(c["url"] for c in cluster["copies"])])
    assert everywhere == places and canonical["video_id"] == bikes and canonical["status"] == "indexed"
    by_url = {c["url"]: c for c in [canonical, *cluster["copies"]]}
    assert by_url[cc]["page_url"] == f"{site}/license.html" and by_url[cc]["source"] == "web"
    assert by_url[cc]["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"
    assert by_url[local]["source"] == "local" and by_url[local]["path"] == str(folder / "bikes-local.mp4")
    [near] = cluster["duplicates"]
    assert near["url"] == (folder / "bikes_crf35.mp4").as_uri() and near["duplicate_of"] == bikes
    # the canonical's document names the near-duplicate as a place too
    assert [c["url"] for c in canonical["copies"] if c["kind"] == "near"] == [near["url"]]

    # the export's duplicate map: the same four places
    run(["-m", "processing", "export", "--out", str(tmp_path / "export")], env)
    dupmap = json.loads((tmp_path / "export" / "duplicates.json").read_text())
    group = dupmap[bikes]
    assert group["duplicates"] == [near["video_id"]]
    assert sorted(p["url"] for p in group["places"]) == sorted([*places, near["url"]])
    assert {p["url"]: p["license_id"] for p in group["places"]}[cc] == "CC-BY-SA-4.0"
    [row] = [json.loads(x) for x in (tmp_path / "export" / "videos.jsonl").read_text().splitlines()
             if json.loads(x)["video_id"] == bikes]  # fmt: skip
    assert sorted(c["url"] for c in row["copies"] if c["kind"] == "exact") == sorted(set(places) - {row["url"]})
