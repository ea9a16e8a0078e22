"""UrlsSpider: URL lists in every format, streamed, shared by processes, crawled like a user runs it."""

import csv
import datetime as dt
import json
import re
import subprocess
import sys
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from crawler.spiders.urls import Columns, chunks, download_via, file_format
from tests.conftest import PYTHON, ROOT, project_env
from tests.crawler.spiders.conftest import by_path, crawl

CLIPS = ["bigbuckbunny", "bikes", "gradio_a"]


def rows(site, tag):
    """Three rows on the test site's clips, with the columns img2dataset lists have."""
    return [{"url": f"{site}/media/{clip}.mp4?list={tag}", "caption": f"{clip}, as listed ({tag})",
             "title": clip.title(), "license": "CC-BY-4.0" if i == 0 else "", "split": ["train", "val", "test"][i],
             "width": 640 + i} for i, clip in enumerate(CLIPS)]  # fmt: skip


def write(path, fmt, table):
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows(table)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table))
    else:
        pq.write_table(pa.Table.from_pylist(table), path, row_group_size=2)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_yields_one_item_per_row(tmp_path, web_site, redis_url, key_prefix, fmt):
    table = rows(web_site, fmt)
    if fmt == "jsonl":
        table[1]["tags"] = ["a", "b"]  # nested values survive in extra
    if fmt == "parquet":
        for r in table:
            r["taken"] = dt.datetime(2024, 3, 1, 12, 0, 0)
    path = write(tmp_path / f"list.{fmt}", fmt, table)
    items, crawled, log = crawl(tmp_path, "urls", "-a", f"path={path}", REDIS_URL=redis_url)
    got = by_path(items, web_site)
    assert set(got) == {f"/media/{c}.mp4?list={fmt}" for c in CLIPS}
    bbb = got[f"/media/bigbuckbunny.mp4?list={fmt}"]
    assert (bbb["source"], bbb["download_via"], bbb["status"], bbb["caption"], bbb["title"], bbb["license"]) == (
        "urls", "files", "new", f"bigbuckbunny, as listed ({fmt})", "Bigbuckbunny", "CC-BY-4.0")
    width = "640" if fmt in ("csv", "tsv") else 640  # text formats keep text
    assert bbb["extra"]["split"] == "train" and bbb["extra"]["width"] == width
    assert got[f"/media/bikes.mp4?list={fmt}"]["license"] is None  # an empty cell is no licence
    if fmt == "jsonl":
        assert got[f"/media/bikes.mp4?list={fmt}"]["extra"]["tags"] == ["a", "b"]
    if fmt == "parquet":
        assert bbb["extra"]["taken"] == "2024-03-01T12:00:00"
    assert "'spiders/urls/rows_read': 3" in log
    assert crawled and all(u.startswith("data:") for u in crawled)  # nothing fetched by the spider


@pytest.mark.slow
def test_second_run_yields_only_new_rows_and_bad_rows_are_recorded(tmp_path, web_site, redis_url, key_prefix):
    table = rows(web_site, "again")
    path = write(tmp_path / "list.csv", "csv", table)
    first, _, _ = crawl(tmp_path, "urls", "-a", f"path={path}", REDIS_URL=redis_url)
    assert len(first) == 3
    extra = [{"url": f"{web_site}/media/gradio_world.mp4?list=new", "caption": "new", "title": "", "license": "",
              "split": "train", "width": 1},
             {"url": "", "caption": "a row without a URL", "title": "", "license": "", "split": "", "width": 0},
             {"url": "ftp://ftp.example.com/clip.mp4", "caption": "", "title": "", "license": "", "split": "",
              "width": 0}]  # fmt: skip
    write(path, "csv", table + extra)
    (tmp_path / "again").mkdir()
    second, _, log = crawl(tmp_path / "again", "urls", "-a", f"path={path}", REDIS_URL=redis_url)
    got = by_path(second, web_site)
    assert set(got) == {"/media/gradio_world.mp4?list=new", "ftp://ftp.example.com/clip.mp4"}
    assert got["ftp://ftp.example.com/clip.mp4"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert "'spiders/urls/videos_seen_before': 3" in log
    assert "'spiders/urls/rows_without_url': 1" in log


def test_a_file_without_the_url_column_fails_at_start_with_one_clear_sentence(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("link,caption\nhttps://example.org/a.mp4,x\n")
    proc = subprocess.run([PYTHON, "-m", "scrapy", "crawl", "urls", "-a", f"path={path}"], cwd=ROOT,
                          env=project_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode != 0
    assert f"{path} has no column 'url' (columns: link, caption); pass -a url_col=NAME" in proc.stderr
    with pytest.raises(ValueError, match="cannot tell the format"):
        file_format("urls.xlsx")


@pytest.mark.slow
def test_url_col_and_caption_col_name_other_columns(tmp_path, web_site, redis_url, key_prefix):
    path = tmp_path / "list.tsv"
    path.write_text(f"link\ttext\tcaption\n{web_site}/media/bikes.mp4?cols=1\tCyclists\tnot the caption\n")
    items, _, _ = crawl(tmp_path, "urls", "-a", f"path={path}", "-a", "url_col=link", "-a", "caption_col=text",
                        REDIS_URL=redis_url)  # fmt: skip
    assert [(i["caption"], i["extra"]) for i in items] == [("Cyclists", {"caption": "not the caption"})]


@pytest.mark.slow
def test_two_processes_share_one_list(tmp_path, web_site, redis_url, key_prefix):
    """A waiting `scrapy crawl urls` and the one reading the file split the rows, each once."""
    n = 8000
    path = tmp_path / "list.txt"  # one URL a line
    path.write_text("".join(f"{web_site}/media/bikes.mp4?row={i}\n" for i in range(n)))
    env = project_env(REDIS_URL=redis_url)
    common = ["-s", "ITEM_PIPELINES={}", "-s", "TELNETCONSOLE_ENABLED=0", "-s", "LOG_LEVEL=INFO",
              "-s", "URLS_CHUNK_ROWS=50", "-s", "DOWNLOAD_DELAY=0.1",
              "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]  # fmt: skip
    procs = []
    for k, args in enumerate([["-s", "MAX_IDLE_TIME_BEFORE_CLOSE=5"], ["-a", f"path={path}"]]):
        cmd = [PYTHON, "-m", "scrapy", "crawl", "urls", *args, *common, "-O", str(tmp_path / f"items{k}.jsonl"),
               "-s", f"LOG_FILE={tmp_path / f'urls{k}.log'}"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    per_process = [[json.loads(line)["url"] for line in (tmp_path / f"items{k}.jsonl").read_text().splitlines()]
                   for k in range(2)]  # fmt: skip
    urls = per_process[0] + per_process[1]
    assert len(urls) == len(set(urls)) == n
    assert all(per_process), [len(p) for p in per_process]  # both took part
    assert redis.Redis.from_url(redis_url).llen("urls:start_urls") == 0


def _rss_of_crawl(tmp_path, path, redis_url, name) -> tuple[int, int]:
    """(peak RSS in KiB, items) of one `scrapy crawl urls -a path=...` (no feed export)."""
    log = tmp_path / f"{name}.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", "urls", "-a", f"path={path}", "-s", "ITEM_PIPELINES={}",
           "-s", "TELNETCONSOLE_ENABLED=0", "-s", f"LOG_FILE={log}", "-s", "LOG_LEVEL=INFO",
           "-s", "SPIDER_IDLE_CLOSE_SECONDS=1"]  # fmt: skip
    wrapper = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=ROOT, env=project_env(REDIS_URL=redis_url),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = log.read_text()
    items = int(re.search(r"'spiders/urls/items': (\d+)", stats).group(1))
    return int(proc.stdout.split()[-1]), items


@pytest.mark.slow
def test_a_big_list_is_streamed_with_bounded_memory(tmp_path, web_site, redis_url, key_prefix):
    """10x the rows (8 MB vs 80 MB of CSV): the crawl's peak memory barely moves."""
    caption = "x" * 2000
    sizes = {}
    for name, n in (("small", 4_000), ("big", 40_000)):
        path = tmp_path / f"{name}.csv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["url", "caption", "n"])
            writer.writerows([f"{web_site}/media/bikes.mp4?{name}={i}", caption, i] for i in range(n))
        rss, items = _rss_of_crawl(tmp_path, path, redis_url, name)
        assert items == n
        sizes[name] = rss
    grown_mb = (sizes["big"] - sizes["small"]) / 1024
    assert grown_mb < 30, sizes  # a whole-file read would add the file's 72 MB and more


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_reading_200k_rows_holds_one_chunk_at_a_time(tmp_path, fmt):
    n, size = 200_000, 500
    path = tmp_path / f"big.{fmt}"
    with open(path, "w", newline="") as f:
        if fmt == "jsonl":
            f.writelines(json.dumps({"url": f"https://example.org/{i}.mp4", "caption": "c" * 100, "n": i}) + "\n"
                         for i in range(n))  # fmt: skip
        else:
            writer = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(["url", "caption", "n"])
            writer.writerows([f"https://example.org/{i}.mp4", "c" * 100, i] for i in range(n))
    assert path.stat().st_size > 25_000_000
    counts = {"rows_without_url": 0, "bad_rows": 0}
    tracemalloc.start()
    seen = 0
    for chunk in chunks(str(path), fmt, Columns(), size, counts):
        assert len(chunk) <= size
        seen += len(chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == n and counts == {"rows_without_url": 0, "bad_rows": 0}
    assert peak < 5_000_000, peak  # a chunk of 500 rows, not the 25 MB file


def test_parquet_is_read_batch_by_batch(tmp_path):
    n = 200_000
    path = tmp_path / "big.parquet"
    table = pa.table({"url": [f"https://example.org/{i}.mp4" for i in range(n)], "caption": ["c" * 100] * n,
                      "n": list(range(n))})  # fmt: skip
    pq.write_table(table, path, row_group_size=10_000)
    del table
    counts = {"rows_without_url": 0, "bad_rows": 0}
    before = pa.total_allocated_bytes()
    peak = seen = 0
    for chunk in chunks(str(path), "parquet", Columns(), 500, counts):
        seen += len(chunk)
        peak = max(peak, pa.total_allocated_bytes() - before)
    assert seen == n
    assert peak < 8_000_000, peak  # one row group of ~1.3 MB decoded at a time, not 25 MB


def test_download_via_sends_manifests_and_platform_pages_to_ytdlp():
    assert download_via("https://cdn.example.org/a.webm") == ("files", None)
    assert download_via("https://cdn.example.org/live/index.m3u8") == ("ytdlp", None)
    assert download_via("https://www.youtube.com/watch?v=dQw4w9WgXcQ") == ("ytdlp", "Youtube")
    assert download_via("https://cdn.example.org/get?id=1") == ("files", None)  # judged by its bytes
