"""The three spiders as users run them: real `scrapy crawl` processes, real Redis, a local site."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import redis

from tests.conftest import PYTHON, ROOT, project_env

DATA = Path(__file__).parent / "data"
SITE = DATA / "site"


@pytest.fixture(scope="module")
def web_site(site):
    """The local test site (tests/site.py), without a trailing slash."""
    return site.rstrip("/")


def crawl(tmp_path, spider, *args, settings=(), timeout=120, **env):
    """Run `scrapy crawl <spider>` like a user; return (items, crawled URLs, log text)."""
    out = tmp_path / f"{spider}-items.jsonl"
    log = tmp_path / f"{spider}.log"
    cmd = [PYTHON, "-m", "scrapy", "crawl", spider, *args, "-O", str(out),
           "-s", "ITEM_PIPELINES={}", "-s", "LOG_LEVEL=DEBUG", "-s", f"LOG_FILE={log}",
           "-s", "TELNETCONSOLE_ENABLED=0"]  # fmt: skip
    for s in settings:
        cmd += ["-s", s]
    proc = subprocess.run(cmd, cwd=ROOT, env=project_env(**env), timeout=timeout,
                          capture_output=True, text=True)  # fmt: skip
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, proc.stderr[-3000:] + text[-3000:]
    assert "Traceback" not in text, text[-5000:]
    items = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    crawled = re.findall(r"Crawled \(\d+\) <GET ([^>]+)>", text)
    return items, crawled, text


def by_path(items, site):
    """Items keyed by URL with the site's origin cut off (URLs must be unique)."""
    urls = [i["url"] for i in items]
    assert len(urls) == len(set(urls)), sorted(u for u in urls if urls.count(u) > 1)
    return {i["url"].replace(site, ""): i for i in items}


def test_scrapy_list_names_the_three_spiders():
    proc = subprocess.run([PYTHON, "-m", "scrapy", "list"], cwd=ROOT, env=project_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.split() == ["local", "web", "ytdlp"], proc.stderr[-2000:]


@pytest.mark.slow
def test_web_crawl_finds_every_pattern_once(tmp_path, web_site, redis_url, key_prefix):
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/index.html",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)

    bbb = got["/media/bigbuckbunny.mp4"]
    assert (bbb["title"], bbb["uploader"], bbb["download_via"], bbb["source"], bbb["status"]) == (
        "Big Buck Bunny (video tag)", "Blender Foundation", "files", "web", "new")
    assert bbb["thumbnail"] == f"{web_site}/media/bbb-poster.jpg"
    assert bbb["page_url"] == f"{web_site}/video-tag.html"
    assert got["/media/bikes.mp4"]["title"] == "Bikes (source tag)"
    og = got["/media/carphone_pristine.mp4"]
    assert (og["title"], og["description"], og["duration_hint"]) == (
        "Carphone (Open Graph)", "The carphone test sequence.", 12.0)
    assert got["/media/gradio_a.mp4"]["title"] == "Gradio A (Twitter card)"
    ld = got["/media/gradio_b.mp4"]
    assert (ld["title"], ld["uploader"], ld["published"], ld["duration_hint"], ld["license"]) == (
        "Gradio B (JSON-LD)", "Gradio Team", "2024-03-01T10:00:00Z", 5.0,
        "https://creativecommons.org/licenses/by/4.0/")
    assert got["/media/gradio_world.mp4"]["title"] == "Gradio World (link)"
    assert got["/hls/bbb/index.m3u8"]["download_via"] == "ytdlp"
    yt = got["https://www.youtube.com/embed/dQw4w9WgXcQ"]
    assert (yt["download_via"], yt["extractor"]) == ("ytdlp", "Youtube")
    # no DNS in the test sandbox: then it is recorded as a retryable crawl failure
    assert yt["status"] == "new" or yt["errors"] == {"crawl": "unresolvable"}
    watch = got["/clips/watch"]  # no extension, application/octet-stream: found by its bytes
    assert (watch["download_via"], watch["status"], watch["page_url"]) == (
        "files", "new", f"{web_site}/index.html")
    assert got["/media/bikes.mp4?variant=cc"]["license"] == "https://creativecommons.org/licenses/by-sa/4.0/"

    # opted-out pages: their videos are recorded as rejected, not dropped
    for path in ("/media/gradio_a.mp4?optout=meta", "/media/gradio_b.mp4?optout=header"):
        assert got[path]["status"] == "rejected", path
        assert got[path]["errors"]["crawl"].startswith("opted_out"), path

    # every /fail/ route is found once (the downloader decides its fate), zero.mp4 is on two pages
    for name in ("slow", "truncated", "wrong-type", "html-as-video", "huge", "endless", "zero", "corrupt"):
        assert got[f"/fail/{name}.mp4"]["status"] == "new", name

    # hostile video URLs are recorded with the reason they were refused
    assert got["file:///etc/passwd.mp4"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert got["ftp://ftp.example.com/clip.mp4"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert got["data:video/mp4;base64,AAAAIGZ0eXBpc29t"]["errors"] == {"crawl": "scheme_not_allowed"}
    long_one = [i for p, i in got.items() if p.startswith("/media/aaaa")]
    assert [i["errors"] for i in long_one] == [{"crawl": "bad_url"}]
    assert "/media/gradio_world.mp4?via=dotdot" in got

    # depth 2 (the default): level2's video is found, level3 is never fetched
    assert "/media/carphone_pristine.mp4?depth=3" in got
    assert "/media/bikes.mp4?depth=4" not in got
    assert f"{web_site}/deep/level2.html" in crawled
    assert f"{web_site}/deep/level3.html" not in crawled
    # robots.txt forbids /private/; off-domain links are not followed; each page fetched once
    assert "/media/bikes.mp4?private=1" not in got
    assert not [u for u in crawled if "/private/" in u]
    assert not [u for u in crawled if not u.startswith(web_site)]
    assert len(crawled) == len(set(crawled))
    assert "'spiders/web/links_offsite'" in log


@pytest.mark.slow
def test_web_spider_consumes_json_and_plain_payloads_from_redis(tmp_path, web_site, redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    client.lpush("web:start_urls", json.dumps({"url": f"{web_site}/deep/level1.html", "meta": {"depth": 0}}))
    client.lpush("web:start_urls", f"{web_site}/twitter.html")
    client.lpush("web:start_urls", '{"no": "url"}')
    items, crawled, log = crawl(tmp_path, "web", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2"],
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert set(got) == {"/media/gradio_world.mp4?depth=2", "/media/gradio_a.mp4"}
    assert f"{web_site}/deep/level2.html" not in crawled  # depth 0: links not followed
    assert client.llen("web:start_urls") == 0
    assert "'spiders/web/bad_payload': 1" in log


@pytest.mark.slow
def test_web_spider_refuses_loopback_without_allow_private(tmp_path, web_site, redis_url, key_prefix):
    items, crawled, log = crawl(tmp_path, "web", "-a", f"url={web_site}/index.html",
                                REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=0)  # fmt: skip
    assert items == [] and crawled == []
    assert "'netguard/refused/private_address'" in log


@pytest.mark.slow
def test_local_spider_finds_videos_by_content_with_hostile_names(tmp_path, media, redis_url, key_prefix):
    root = tmp_path / "My Videos"
    (root / "sub dir" / "deeper").mkdir(parents=True)
    clip = media["gradio_a"]
    names = ["with space.mp4", "ünïcødé 動画.mp4", "new\nline.mp4", "-leading-dash.mp4",
             "sub dir/deeper/nested.MOV", "sub dir/no_extension"]  # fmt: skip
    for name in names:
        shutil.copy(clip, root / name)
    (root / "notes.txt").write_text("not a video")
    (root / "empty.bin").write_bytes(b"")
    (root / "fake.mp4").write_text("<html>not really</html>")  # extension only: the probe decides
    (root / "sub dir" / "loop").symlink_to(root, target_is_directory=True)

    items, _, log = crawl(tmp_path, "local", "-a", f"path={root}", REDIS_URL=redis_url)
    paths = {i["path"] for i in items}
    assert paths == {str(root / n) for n in names + ["fake.mp4"]}
    for item in items:
        assert (item["source"], item["download_via"], item["status"]) == ("local", "local", "new")
        assert item["title"] == Path(item["path"]).stem
        assert Path(unquote(urlsplit(item["url"]).path)) == Path(item["path"])
        assert item["url"].startswith("file:///")
    assert "'spiders/local/skipped/not_video': 2" in log
    assert "'spiders/local/sniffed/by_extension': 1" in log

    # a second run on the same Redis yields only what is new
    shutil.copy(clip, root / "added later.webm")
    items, _, _ = crawl(tmp_path, "local", "-a", f"path={root}", REDIS_URL=redis_url)
    assert [i["path"] for i in items] == [str(root / "added later.webm")]


@pytest.mark.slow
def test_ytdlp_spider_resolves_pages_playlists_and_records_failures(tmp_path, web_site, redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    for path in ("/video-tag.html", "/playlist.html", "/media/bikes.mp4", "/fail/404"):
        client.rpush("ytdlp:start_urls", json.dumps({"url": web_site + path}))
    client.rpush("ytdlp:start_urls", "file:///etc/passwd")
    items, _, log = crawl(tmp_path, "ytdlp", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2"],
                          REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)  # fmt: skip
    got = by_path(items, web_site)
    assert all(i["source"] == "ytdlp" and i["download_via"] == "ytdlp" for i in items)

    single = got["/video-tag.html"]
    assert single["status"] == "new" and single["title"].startswith("Big Buck Bunny (video tag)")
    assert single["extractor"] in ("Generic", "HTML5MediaEmbed")  # yt-dlp's generic extractors
    assert single["platform_id"].startswith(single["extractor"] + ":")
    direct = got["/media/bikes.mp4"]
    assert direct["status"] == "new" and direct["platform_id"] == "Generic:bikes"
    playlist = [u for u in got if "?pl=" in u]
    assert sorted(playlist) == ["/media/gradio_a.mp4?pl=1", "/media/gradio_b.mp4?pl=2",
                                "/media/gradio_world.mp4?pl=3"]  # fmt: skip
    assert all(got[u]["page_url"] == f"{web_site}/playlist.html" for u in playlist)

    failed = got["/fail/404"]
    assert failed["status"] == "failed" and failed["errors"]["resolve"].startswith("unavailable")
    assert got["file:///etc/passwd"]["errors"] == {"crawl": "scheme_not_allowed"}
    assert len(items) == 7
    assert "'spiders/ytdlp/playlists': 1" in log


@pytest.mark.slow
def test_two_processes_on_one_redis_share_one_crawl(tmp_path, web_site, redis_url, key_prefix, data_dir):
    """Two `scrapy crawl web` processes, full item pipelines: every page fetched once, every
    video enqueued once (B's pipelines hand videos to the stream STREAM_KEY)."""
    import settings

    pytest.importorskip("pipelines.handoff")
    n = 40  # pages of the generated tree; depth 3 reaches them all
    env = project_env(REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=1)
    procs, logs = [], []
    for k, args in enumerate([[], ["-a", f"url={web_site}/gen/0.html?n={n}", "-a", "depth=4"]]):
        log = tmp_path / f"web{k}.log"
        logs.append(log)
        cmd = [PYTHON, "-m", "scrapy", "crawl", "web", *args, "-O", str(tmp_path / f"items{k}.jsonl"),
               "-s", "LOG_LEVEL=DEBUG", "-s", f"LOG_FILE={log}", "-s", "TELNETCONSOLE_ENABLED=0",
               "-s", "MAX_IDLE_TIME_BEFORE_CLOSE=4",
               # slow enough (>= 12 s for the tree) that the second process joins in
               "-s", "DOWNLOAD_DELAY=0.3", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=1"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]

    crawled = [u for log in logs for u in re.findall(r"Crawled \(\d+\) <GET ([^>]+)>", log.read_text())]
    pages = [u for u in crawled if "/gen/" in u]
    assert len(pages) == len(set(pages)) == n
    for log in logs:  # both processes took part
        assert re.search(r"Crawled \(200\) <GET [^>]+/gen/", log.read_text()), log.name
    items = [json.loads(line) for k in range(2) for line in (tmp_path / f"items{k}.jsonl").read_text().splitlines()]
    urls = [i["url"] for i in items]
    assert len(urls) == len(set(urls)) == 6  # the tree shows each of the 6 clips, many times
    entries = redis.Redis.from_url(redis_url).xrange(settings.STREAM_KEY)
    queued = [json.loads(fields[b"item"])["url"] for _, fields in entries]
    assert len(queued) == len(set(queued))
    assert sorted(queued) == sorted(i["url"] for i in items if i["status"] == "queued")
    assert queued  # at least the distinct clips made it to the workers' stream


def test_sniff_recognises_containers_by_their_first_bytes(media):
    from crawler.spiders.local import sniff

    assert sniff(media["bikes"].read_bytes()[:400]) == "isobmff"
    assert sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 40) == "matroska"
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert sniff(b"FLV\x01\x05") == "flv"
    assert sniff((b"\x47" + b"\x00" * 187) * 3) == "mpeg-ts"
    assert sniff(b"\x00\x00\x00\x18ftypheic") is None  # a still image
    assert sniff(b"") is None
    assert sniff(b"<html><body>not a video</body></html>") is None


def test_ytdlp_error_codes_and_bot_specific_robots_headers():
    from scrapy.http import HtmlResponse

    from crawler.spiders.web import header_directives
    from crawler.spiders.ytdlp import error_code

    assert error_code(Exception("ERROR: Unsupported URL: https://x")) == "unsupported_url"
    assert error_code(Exception("ERROR: [youtube] x: Video unavailable")) == "unavailable"
    assert error_code(Exception("ERROR: Private video. Sign in")) == "login_required"
    assert error_code(Exception("weird")) == "extractor_error"
    headers = {"X-Robots-Tag": ["otherbot: noai", "noindex, nofollow"]}
    assert header_directives(HtmlResponse("https://e.org/", headers=headers)) == ["noindex", "nofollow"]
    headers = {"X-Robots-Tag": "videopipe: noai"}
    assert header_directives(HtmlResponse("https://e.org/", headers=headers)) == ["noai"]
