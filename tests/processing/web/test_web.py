"""The search page: its JSON API, media by id with Range, refusals, and a real headless browser."""

import hashlib
import json
import shutil
import urllib.error
import urllib.request

import pytest

from processing.catalogue import SqliteCatalogue
from processing.web.server import SearchServer, parse_range
from tests.conftest import ROOT
from tests.processing.catalogue.corpus import corpus, make_doc, vid


@pytest.fixture(scope="module")
def search_site(media, tmp_path_factory):
    path = tmp_path_factory.mktemp("web")
    cat = SqliteCatalogue(path / "catalogue.sqlite")
    docs = corpus(media, path / "thumbs")
    for doc in docs:  # as the pipeline records it: a video is served only while its bytes match
        if doc.get("path"):
            with open(doc["path"], "rb") as f:
                doc["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    docs.append(make_doc("gone", "File deleted since", path=path / "missing.mp4"))
    docs.append(make_doc("remote", "Stored in S3", path="s3://bucket/full/x.mp4"))
    (path / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")  # swapped in under a media root
    docs.append(make_doc("passwd", "Not the recorded bytes", path=path / "passwd"))
    cat.upsert(docs)
    server = SearchServer(cat, port=0, media_roots=[next(iter(media.values())).parent, path])
    server.start_background()
    yield server.url, media
    server.shutdown()
    server.server_close()
    cat.close()


def file_duration(path) -> float:
    import av

    with av.open(str(path)) as container:
        return container.duration / 1_000_000


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def api(url):
    status, _, body = get(url)
    return status, json.loads(body)


def test_search_api_with_filters_facets_and_paging(search_site):
    base, _ = search_site
    status, data = api(f"{base}/api/search?q=dog+on+a+beach")
    assert status == 200 and data["hits"][0]["video_id"] == vid("dog")
    top = data["hits"][0]
    assert top["thumbnail"] == f"/thumb/{vid('dog')}" and top["media"] == f"/media/{vid('dog')}"
    assert top["duration"] == 20.0 and "golden retriever" in top["tags"]
    _, data = api(f"{base}/api/search?tag=sport&min_duration=10")
    assert [h["video_id"] for h in data["hits"]] == [vid("bikes")]
    _, data = api(f"{base}/api/search?per_page=2&page=2")
    assert data["page"] == 2 and data["pages"] == 4 and len(data["hits"]) == 2  # 8 kept videos
    assert {f["value"] for f in data["facets"]["sources"]} == {"web", "archive"}
    status, data = api(f"{base}/api/search?min_duration=ten")
    assert status == 400 and "min_duration" in data["message"]


def test_video_similar_and_duplicates_api(search_site):
    base, _ = search_site
    _, data = api(f"{base}/api/video/{vid('world-copy')}")
    assert data["doc"]["title"] == "Hello world demo (re-upload)" and "vector" not in data["doc"]
    assert data["cluster"]["canonical"]["video_id"] == vid("world")
    assert [d["video_id"] for d in data["cluster"]["duplicates"]] == [vid("world-copy"), vid("world-copy2")]
    _, data = api(f"{base}/api/similar/{vid('dog')}")
    assert data["hits"][0]["video_id"] == vid("puppy") and data["similar_to"] == vid("dog")
    assert api(f"{base}/api/video/{'0' * 64}")[0] == 404
    assert api(f"{base}/api/video/not-an-id")[0] == 400


def test_media_is_served_by_id_with_ranges(search_site):
    base, media = search_site
    raw = media["bigbuckbunny"].read_bytes()
    status, headers, body = get(f"{base}/media/{vid('dog')}")
    assert status == 200 and body == raw and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "video/mp4"
    status, headers, body = get(f"{base}/media/{vid('dog')}", {"Range": "bytes=100-199"})
    assert status == 206 and body == raw[100:200] and headers["Content-Range"] == f"bytes 100-199/{len(raw)}"
    status, _, body = get(f"{base}/media/{vid('dog')}", {"Range": "bytes=-50"})
    assert status == 206 and body == raw[-50:]
    status, headers, _ = get(f"{base}/media/{vid('dog')}", {"Range": f"bytes={len(raw)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(raw)}"
    status, headers, body = get(f"{base}/thumb/{vid('dog')}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"


@pytest.mark.parametrize("path,code", [
    ("/media/../../etc/passwd", 404), ("/media/%2e%2e%2fetc%2fpasswd", 400), ("/media/" + "0" * 64, 404),
    ("/static/../server.py", 404), ("/static/server.py", 404), ("/thumb/" + vid("world-copy2"), 404),
])  # fmt: skip
def test_arbitrary_paths_are_never_served(search_site, path, code):
    base, _ = search_site
    status, _, body = get(base + path)
    assert status == code and b"root:" not in body


def test_missing_remote_and_non_video_files_are_refused_with_a_reason(search_site):
    base, _ = search_site
    for name in ("gone", "remote"):
        status, _, body = get(f"{base}/media/{vid(name)}")
        assert status == 404 and json.loads(body)["error"] == "file_not_available"
    status, _, body = get(f"{base}/media/{vid('passwd')}")  # not the sha256 the catalogue recorded
    assert status == 404 and json.loads(body)["error"] == "file_changed" and b"root:" not in body


def test_parse_range_edge_cases():
    assert parse_range("", 10) is None
    assert parse_range("bytes=0-", 10) == (0, 9)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-0", 10) == "bad" and parse_range("bytes=9-3", 10) == "bad"
    assert parse_range("items=0-1", 10) == "bad" and parse_range("bytes=0-1,3-4", 10) == "bad"


@pytest.mark.browser
def test_search_page_in_a_headless_browser(search_site, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, media = search_site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(base + "/")
            expect(page.locator("#results .card")).to_have_count(8)  # every kept video, newest first
            page.fill("#q", "dog on a beach")
            page.click("#search-button")
            # the first query embeds the corpus' texts (MiniLM on the CPU): give it time on a busy machine
            expect(page.locator("#status-line")).to_contain_text("for “dog on a beach”", timeout=60000)
            first = page.locator("#results .card").first
            expect(first).to_have_attribute("data-video-id", vid("dog"))
            expect(first.locator("img")).to_have_attribute("src", f"/thumb/{vid('dog')}")
            expect(first.locator(".duration")).to_have_text("0:20")
            # a filter: the licence facet link
            page.locator("#facet-licenses a[data-value='CC-BY-4.0']").click()  # normalised ids
            expect(page.locator("#f-license")).to_have_value("CC-BY-4.0")
            ids = page.locator("#results .card").evaluate_all("els => els.map(e => e.dataset.videoId)")
            assert set(ids) <= {vid("dog"), vid("puppy")} and vid("dog") in ids
            # open a result: the player gets the file by id and can read it
            page.locator(f"#results .card[data-video-id='{vid('dog')}']").click()
            expect(page.locator("#detail-title")).to_have_text("A dog running on the beach")
            expect(page.locator("#player")).to_have_attribute("src", f"/media/{vid('dog')}")
            for _ in range(200):  # polled from here: wait_for_function evals in the page, which the CSP forbids
                if page.evaluate("document.getElementById('player').readyState") >= 1:
                    break
                page.wait_for_timeout(100)
            duration = page.evaluate("document.getElementById('player').duration")
            assert duration == pytest.approx(file_duration(media["bigbuckbunny"]), abs=0.5)
            expect(page.locator("#cluster li")).to_have_text(["canonical: A dog running on the beach",
                                                              "no duplicates recorded"])
            page.screenshot(path=str(tmp_path / "search-page.png"))
            # follow "similar videos" (the licence filter still applies)
            page.click("#similar-link")
            expect(page.locator("#status-line")).to_contain_text("similar to")
            expect(page.locator("#results .card").first).to_have_attribute("data-video-id", vid("puppy"))
            # a duplicate's cluster
            page.fill("#q", "hello world")
            page.click("#clear-filters")
            page.click("#search-button")
            page.locator(f"#results .card[data-video-id='{vid('world')}']").click()
            expect(page.locator("#cluster li.duplicate")).to_have_count(2)
            assert not errors, errors
        finally:
            browser.close()
    shutil.copy(tmp_path / "search-page.png", ROOT / "docs" / "search-page.png")


def test_python_m_processing_serve_as_users_type_it(tmp_path):
    import socket
    import subprocess
    import time

    from tests.conftest import PYTHON, project_env

    cat_path = tmp_path / "catalogue.sqlite"
    with SqliteCatalogue(cat_path) as c:
        c.upsert([make_doc("solo", "A lighthouse at dusk", tags=["sea"], duration=9.0)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = project_env(CATALOGUE_PATH=str(cat_path), ELASTICSEARCH_URL="", SEARCH_SEMANTIC="0")
    proc = subprocess.Popen([PYTHON, "-m", "processing", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, data = api(f"http://127.0.0.1:{port}/api/search?q=lighthouse")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        assert status == 200 and [h["title"] for h in data["hits"]] == ["A lighthouse at dusk"]
        status, headers, body = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"<title>Video catalogue search</title>" in body
    finally:
        proc.terminate()
        proc.wait(timeout=20)
