"""The search server under attack, over real HTTP on loopback: token, headers, idle and slow
clients, the connection cap, and files swapped behind the catalogue's back."""

import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time

import pytest

from processing.catalogue import SqliteCatalogue
from processing.web.server import SearchServer
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import make_doc, vid
from tests.processing.web.serving import request, running

HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path, media):
    """A FILES_STORE-like folder with two real clips, and a catalogue whose documents name them."""
    root = tmp_path / "videos"
    (root / "full").mkdir(parents=True)
    files = {}
    for name in ("bikes", "gradio_a"):
        files[name] = root / "full" / f"{sha256(media[name])}.mp4"
        shutil.copy(media[name], files[name])
    cat = SqliteCatalogue(tmp_path / "catalogue.sqlite")
    thumbs = tmp_path / "thumbs"
    thumbs.mkdir()
    (thumbs / "bikes.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    docs = [make_doc("bikes", "Bikes", path=files["bikes"], thumbnail=thumbs / "bikes.jpg"),
            make_doc("outside", "A file outside every root", path=media["bikes"])]  # fmt: skip
    for doc in docs:
        doc["sha256"] = sha256(media["bikes"])  # what the pipeline records: the bytes' digest
    cat.upsert(docs)
    yield cat, root, files, thumbs
    cat.close()


def test_a_set_token_is_checked_on_every_request_and_the_page_works_with_its_cookie(store):
    cat, root, files, _ = store
    with running(cat, token="s3cret-token", media_roots=[root]) as server:
        for path in ("/", "/static/app.js", "/api/counts", f"/media/{vid('bikes')}", "/nothing"):
            status, headers, body = request(server, path)
            assert status == 401, path
            assert json.loads(body)["error"] == "unauthorized" and headers["WWW-Authenticate"].startswith("Bearer")
        assert request(server, "/api/counts", {"Authorization": "Bearer wrong"})[0] == 401
        assert request(server, "/api/counts?token=wrong")[0] == 401
        assert request(server, "/api/counts", {"Cookie": "vp_search_token=s3cret-token"})[0] == 401
        status, _, body = request(server, "/api/counts", {"Authorization": "Bearer s3cret-token"})
        assert status == 200 and "indexed" in json.loads(body)

        # the browser: ?token= once, then the cookie; the token leaves the address bar
        status, headers, _ = request(server, "/?token=s3cret-token&q=bikes")
        assert status == 303 and headers["Location"] == "/?q=bikes"
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret-token" not in cookie
        jar = {"Cookie": cookie.split(";", 1)[0]}
        status, _, body = request(server, "/", jar)
        assert status == 200 and b"<title>Video catalogue search</title>" in body
        assert request(server, "/static/app.js", jar)[0] == 200
        status, _, body = request(server, f"/media/{vid('bikes')}", jar)
        assert status == 200 and body == files["bikes"].read_bytes()
        status, _, body = request(server, "/api/search?q=bikes", jar)
        assert status == 200 and [h["video_id"] for h in json.loads(body)["hits"]] == [vid("bikes")]


def test_binding_beyond_loopback_needs_a_token(store, tmp_path):
    cat, *_ = store
    for host in ("0.0.0.0", ""):
        with pytest.raises(ValueError, match="binding anything but loopback needs --token or SEARCH_TOKEN"):
            SearchServer(cat, host=host, port=0, token="")
    with running(cat, token="tok") as server:  # loopback with a token: still checked
        assert request(server, "/api/counts")[0] == 401
    server = SearchServer(cat, host="0.0.0.0", port=0, token="tok")  # with one it starts
    server.server_close()

    # as users type it: one sentence, exit status 2, nothing listening
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = project_env(CATALOGUE_PATH=str(tmp_path / "catalogue.sqlite"), ELASTICSEARCH_URL="",
                      SEARCH_SEMANTIC="0", SEARCH_TOKEN="")  # fmt: skip
    proc = subprocess.run([PYTHON, "-m", "processing", "serve", "--host", "0.0.0.0", "--port", str(port)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to serve on '0.0.0.0' without a token" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_security_headers_on_every_response(store):
    cat, root, *_ = store
    with running(cat, media_roots=[root]) as server:
        answers = {path: request(server, path) for path in (
            "/", "/static/app.js", "/static/style.css", "/api/search?q=bikes", "/api/nope",
            f"/media/{vid('bikes')}", f"/media/{vid('outside')}", "/media/not-an-id", "/api/search?min_duration=x",
        )}  # fmt: skip
        answers["POST /"] = request(server, "/", method="POST")  # http.server's own 501
        with socket.create_connection(server.server_address, timeout=5) as sock:  # http.server's own 431
            sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n")
            raw = read_to_end(sock, 5).decode("latin-1")
    assert {p: a[0] for p, a in answers.items()} == {
        "/": 200, "/static/app.js": 200, "/static/style.css": 200, "/api/search?q=bikes": 200, "/api/nope": 404,
        f"/media/{vid('bikes')}": 200, f"/media/{vid('outside')}": 404, "/media/not-an-id": 400,
        "/api/search?min_duration=x": 400, "POST /": 501,
    }  # fmt: skip
    for path, (_, headers, _) in answers.items():
        assert all(headers[h] for h in HEADERS), path
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert raw.startswith("HTTP/1.0 431") and "X-Content-Type-Options: nosniff" in raw


def _threads() -> int:
    return threading.active_count()


def read_to_end(sock, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_idle_connections_are_capped_answered_503_and_cut(store):
    cat, *_ = store
    with running(cat, max_connections=8, request_timeout=1.0) as server:
        base = _threads()
        idle = [socket.create_connection(server.server_address, timeout=5) for _ in range(50)]
        try:
            time.sleep(0.5)
            assert _threads() - base <= 8  # one thread per served connection, never more
            # a normal request is answered as soon as the idle ones are cut (request_timeout)
            start = time.monotonic()
            while True:
                try:
                    status = request(server, "/api/counts", timeout=5)[0]
                except (ConnectionError, http.client.HTTPException):
                    status = None  # the 503 came before the request was sent
                if status == 200:
                    break
                assert status in (503, None) and time.monotonic() - start < 4, status
                time.sleep(0.1)
            assert time.monotonic() - start < 3
            answers = [read_to_end(sock, 3) for sock in idle]
        finally:
            for sock in idle:
                sock.close()
        busy = sum(a.startswith(b"HTTP/1.0 503 ") for a in answers)
        cut = sum(a == b"" for a in answers)  # held a slot, sent nothing, closed unanswered
        assert busy >= 42 and cut >= 1 and busy + cut == 50 and server.refused_busy >= 42
        assert b"X-Content-Type-Options: nosniff" in next(a for a in answers if a)
        time.sleep(0.3)
        assert _threads() - base <= 1


def test_fifty_idle_connections_do_not_delay_a_request_under_the_default_cap(store):
    cat, *_ = store
    with running(cat) as server:  # SEARCH_MAX_CONNECTIONS=64, SEARCH_REQUEST_TIMEOUT=10
        base = _threads()
        idle = [socket.create_connection(server.server_address, timeout=5) for _ in range(50)]
        try:
            time.sleep(0.3)
            start = time.monotonic()
            assert request(server, "/api/counts")[0] == 200
            assert time.monotonic() - start < 2
            assert _threads() - base <= 51
        finally:
            for sock in idle:
                sock.close()


def test_a_slow_loris_is_cut_after_the_request_timeout(store):
    cat, *_ = store
    # every byte comes well within the 5 s socket timeout: only the deadline for the head can stop it
    with running(cat, request_timeout=1.5, socket_timeout=5.0) as server:
        sock = socket.create_connection(server.server_address, timeout=5)
        start = time.monotonic()
        closed_at = None
        try:
            sock.sendall(b"GET /api/counts HTTP/1.1\r\nHost: x\r\n")
            for byte in b"X-Slow: " + b"a" * 200:
                if select.select([sock], [], [], 0)[0] and sock.recv(64) == b"":
                    closed_at = time.monotonic() - start
                    break
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.monotonic() - start
                    break
                time.sleep(0.2)
        finally:
            sock.close()
        assert closed_at is not None and 1.3 <= closed_at <= 3.5, closed_at
        assert request(server, "/api/counts")[0] == 200  # the server goes on


def test_media_is_served_only_while_it_is_the_indexed_file_under_a_root(store, media, tmp_path):
    cat, root, files, thumbs = store
    target = files["bikes"]
    real = target.read_bytes()
    with running(cat, media_roots=[root]) as server:
        media_url, thumb_url = f"/media/{vid('bikes')}", f"/thumb/{vid('bikes')}"

        def error(path):
            status, _, body = request(server, path)
            assert status == 404 and b"root:" not in body, (status, body[:200])
            return json.loads(body)["error"]

        status, _, body = request(server, media_url)
        assert status == 200 and body == real
        assert error(f"/media/{vid('outside')}") == "file_not_available"  # real file, but under no root
        assert error(thumb_url) == "file_not_available"  # thumbnails folder is not a root here

        target.unlink()
        target.symlink_to("/etc/passwd")  # swapped for a link out of the store
        assert error(media_url) == "file_not_available"
        target.unlink()
        target.symlink_to(files["gradio_a"])  # swapped for another video inside the store
        assert error(media_url) == "file_changed"
        target.unlink()
        moved = root / "elsewhere.mp4"
        moved.write_bytes(real)
        target.symlink_to(moved)  # a link to the very same bytes inside the store is still the file
        assert request(server, media_url)[0] == 200
        target.unlink()
        target.write_bytes(real[:-1] + bytes([real[-1] ^ 1]))  # same size, one byte changed
        assert error(media_url) == "file_changed"
        target.write_bytes(real)
        status, _, body = request(server, media_url, {"Range": "bytes=10-19"})
        assert status == 206 and body == real[10:20]

        (root / "full").rename(root / "full-real")  # a folder on the path swapped for a link
        (root / "full").symlink_to("/etc")
        assert error(media_url) == "file_not_available"
    with running(cat, media_roots=[root, thumbs]) as server:
        assert request(server, f"/thumb/{vid('bikes')}")[0] == 200
        (thumbs / "bikes.jpg").unlink()
        (thumbs / "bikes.jpg").symlink_to("/etc/passwd")
        status, _, body = request(server, f"/thumb/{vid('bikes')}")
        assert status == 404 and b"root:" not in body
    assert os.path.islink(root / "full")
