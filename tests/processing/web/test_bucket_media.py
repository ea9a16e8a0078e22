"""The search page with no shared disk: videos and thumbnails in a bucket, served over real HTTP.

The object stores are STAND-INS on loopback (tests/objectstore.py): moto's S3 server and
gcp-storage-emulator, not S3 or GCS. The thumbnail is written by the real frames stage from
``THUMBNAILS_URI``; the search server reads both objects by ranged GETs. What a user checks: the
page's video and thumbnail are the bucket's bytes, a Range request gets its slice, and nothing
outside FILES_STORE / THUMBNAILS_URI, nor bytes other than the indexed ones, is ever served.
"""

import hashlib
import http.client
import json
import subprocess
import time

import pytest

import settings
from crawler.items import VideoItem
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.stages.frames import FramesStage
from processing.web import server as web
from processing.web.server import ObjectFile
from processing.work import Work
from tests.conftest import PYTHON, ROOT, project_env
from tests.objectstore import free_port
from tests.processing.catalogue.corpus import make_doc, vid
from tests.processing.web.serving import request, running


def error(port, path) -> str:
    status, _, body = request(port, path)
    assert status == 404 and b"ftyp" not in body and b"\xff\xd8\xff" not in body, (status, body[:200])
    return json.loads(body)["error"]


def make_corpus(buckets, media, tmp_path, monkeypatch):
    """FILES_STORE and THUMBNAILS_URI in one bucket; the bikes clip there with the thumbnail the frames
    stage wrote; the same bytes in places no root covers; a catalogue naming them all."""
    scheme = buckets.scheme
    for name in ("corpus", "corpus-evil"):
        buckets.make(name)
    store, thumbs = f"{scheme}://corpus/videos", f"{scheme}://corpus/thumbnails"
    monkeypatch.setattr(settings, "FILES_STORE", store)
    monkeypatch.setattr(settings, "THUMBNAILS_URI", thumbs + "/")
    monkeypatch.setattr(settings, "SEARCH_MEDIA_ROOTS", [])
    monkeypatch.setattr(settings, "DATA_DIR", str(tmp_path / "data"))
    data = media["bikes"].read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    uri = buckets.put(data, "corpus", f"videos/full/{sha}.mp4")

    stage = FramesStage.from_config(ProcessingConfig.from_settings(num_gpus=0, labelers=()))
    stage.setup()
    work = Work(VideoItem(url=uri, source="local", path=uri, video_id=sha))
    stage.process_batch([work])
    assert work.item.thumbnail_path == f"{thumbs}/{sha}.jpg"  # where THUMBNAILS_URI sent it

    def doc(name, path, thumb=None):
        return make_doc(name, name, path=path, thumbnail=thumb, size_bytes=len(data)) | {"sha256": sha}

    evil = buckets.put(data, "corpus-evil", f"videos/full/{sha}.mp4")
    evil_thumb = buckets.put(buckets.read("corpus", f"thumbnails/{sha}.jpg"), "corpus-evil", f"thumbnails/{sha}.jpg")
    private = buckets.put(data, "corpus", f"private/{sha}.mp4")
    if scheme == "s3":  # such keys exist literally: refused all the same (a reader may normalise them);
        for odd in (f"videos/full/../../private/{sha}.mp4", f"videos/full/%2e%2e/%2e%2e/private/{sha}.mp4"):
            buckets.put(data, "corpus", odd)  # (gcp-storage-emulator drops the connection on such a name)
    cat = SqliteCatalogue(tmp_path / "catalogue.sqlite")
    cat.upsert([
        doc("bikes", uri, work.item.thumbnail_path),
        doc("evil", evil, evil_thumb),  # another bucket whose name starts with the root's
        doc("private", private, f"{scheme}://corpus/private/{sha}.mp4"),  # the root's bucket, not its prefix
        doc("dotdot", f"{store}/full/../../private/{sha}.mp4", f"{thumbs}/../private/{sha}.mp4"),
        doc("encoded", f"{store}/full/%2e%2e/%2e%2e/private/{sha}.mp4", f"{thumbs}/%2e%2e/private/{sha}.mp4"),
        doc("gone", f"{store}/full/{'0' * 64}.mp4", f"{thumbs}/{'0' * 64}.jpg"),
    ])  # fmt: skip
    return cat, data, uri


@pytest.fixture
def corpus(buckets, media, tmp_path, monkeypatch):
    """``make_corpus`` on each stand-in in turn."""
    cat, data, uri = make_corpus(buckets, media, tmp_path, monkeypatch)
    yield cat, data, uri
    cat.close()


@pytest.fixture
def s3_corpus(s3, media, tmp_path, monkeypatch):
    """``make_corpus`` on the S3 stand-in."""
    cat, data, uri = make_corpus(s3, media, tmp_path, monkeypatch)
    yield cat, data, uri
    cat.close()


def test_video_and_thumbnail_in_a_bucket_are_served_with_ranges(corpus, buckets, monkeypatch):
    cat, data, uri = corpus
    fetched = []  # (start, end) of every GET the search server sends to the store for the video
    if buckets.scheme == "s3":
        import s3fs

        real_fetch = s3fs.core.S3File._fetch_range
        spy = lambda f, start, end: fetched.append((start, end)) or real_fetch(f, start, end)  # noqa: E731
        monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", spy)
    with running(cat) as server:  # roots from the settings: FILES_STORE, THUMBNAILS_URI
        port = server.server_address[1]
        status, _, body = request(port, f"/api/video/{vid('bikes')}")
        card = json.loads(body)
        assert status == 200 and card["media"] == f"/media/{vid('bikes')}" and card["thumbnail"] == f"/thumb/{vid('bikes')}"

        status, headers, body = request(port, card["media"])
        assert status == 200 and body == data and headers["Content-Type"] == "video/mp4", body[:300]
        assert headers["Accept-Ranges"] == "bytes" and int(headers["Content-Length"]) == len(data)
        assert all(end - start <= web.OBJECT_CHUNK for start, end in fetched)  # ranged GETs, never the whole object
        fetched.clear()
        status, headers, body = request(port, card["media"], {"Range": "bytes=100000-100099"})
        assert status == 206 and body == data[100000:100100]
        assert headers["Content-Range"] == f"bytes 100000-100099/{len(data)}"
        if buckets.scheme == "s3":
            assert fetched == [(100000, 100100)]  # the hash is cached per ETag: only the slice is read
        status, _, body = request(port, card["media"], {"Range": "bytes=-1000"})
        assert status == 206 and body == data[-1000:]
        status, headers, _ = request(port, card["media"], {"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
        status, headers, body = request(port, card["media"], method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(data)

        status, headers, body = request(port, card["thumbnail"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        sha = hashlib.sha256(data).hexdigest()
        assert body[:3] == b"\xff\xd8\xff" and body == buckets.read("corpus", f"thumbnails/{sha}.jpg")


def test_objects_outside_the_roots_or_with_other_bytes_are_refused(corpus, buckets):
    cat, data, uri = corpus
    key = uri.split("/", 3)[3]
    with running(cat) as server:
        port = server.server_address[1]
        for name in ("evil", "private", "dotdot", "encoded"):  # the bytes are the indexed ones, the place is not
            assert error(port, f"/media/{vid(name)}") == "file_not_available", name
            assert error(port, f"/thumb/{vid(name)}") == "file_not_available", name
        assert error(port, f"/media/{vid('gone')}") == "file_not_available"
        assert error(port, f"/thumb/{vid('gone')}") == "file_not_available"

        assert request(port, f"/media/{vid('bikes')}")[0] == 200
        buckets.put(data[:-1] + bytes([data[-1] ^ 1]), "corpus", key)  # same size, one byte changed
        assert error(port, f"/media/{vid('bikes')}") == "file_changed"
        buckets.put(data[:-10], "corpus", key)  # shorter
        assert error(port, f"/media/{vid('bikes')}") == "file_changed"
        buckets.put(data, "corpus", key)  # the indexed bytes again
        status, _, body = request(port, f"/media/{vid('bikes')}", {"Range": "bytes=10-19"})
        assert status == 206 and body == data[10:20]
    scheme = buckets.scheme
    with running(cat, media_roots=[f"{scheme}://corpus"], thumbnail_roots=[]) as server:  # a whole bucket
        port = server.server_address[1]
        assert request(port, f"/media/{vid('private')}")[0] == 200  # in the bucket now
        assert error(port, f"/media/{vid('evil')}") == "file_not_available"  # s3://corpus-evil is not s3://corpus
        for name in ("dotdot", "encoded"):
            assert error(port, f"/media/{vid(name)}") == "file_not_available", name
    with running(cat, media_roots=[], thumbnail_roots=[]) as server:  # no root at all: nothing
        assert error(server.server_address[1], f"/media/{vid('bikes')}") == "file_not_available"
        assert error(server.server_address[1], f"/thumb/{vid('bikes')}") == "file_not_available"


def test_an_object_replaced_mid_stream_cuts_the_response_short(s3_corpus, s3, monkeypatch):
    """S3 reads carry If-Match: the ETag seen at open (GCS reads name the generation, which
    gcp-storage-emulator ignores: checked on S3 only)."""
    cat, data, uri = s3_corpus
    key = uri.split("/", 3)[3]
    monkeypatch.setattr(ObjectFile, "chunk", 64 * 1024)
    real_read = ObjectFile.read
    replaced = []

    def read_then_replace(self, n):
        chunk = real_read(self, n)
        if armed and not replaced:
            s3.put(b"x" * len(data), "corpus", key)  # a new object under the name, after the first GET
            replaced.append(self.pos)
        return chunk

    monkeypatch.setattr(ObjectFile, "read", read_then_replace)
    with running(cat) as server:
        armed = False
        assert request(server.server_address[1], f"/media/{vid('bikes')}")[0] == 200  # hashed: cached by ETag
        armed = True
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=20)
        try:
            conn.request("GET", f"/media/{vid('bikes')}")
            resp = conn.getresponse()
            assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(data)
            with pytest.raises(http.client.IncompleteRead) as cut:
                resp.read()
        finally:
            conn.close()
    assert replaced == [64 * 1024] and cut.value.partial == data[: 64 * 1024]  # never a byte of the new object


def test_python_m_processing_serve_checks_its_buckets_and_serves_from_them(s3_corpus, tmp_path):
    cat, data, uri = s3_corpus
    env = project_env(CATALOGUE_PATH=str(tmp_path / "catalogue.sqlite"), ELASTICSEARCH_URL="", SEARCH_SEMANTIC="0",
                      FILES_STORE="s3://corpus/videos", THUMBNAILS_URI="s3://no-such-bucket/thumbnails",
                      DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    port = free_port()
    args = [PYTHON, "-m", "processing", "serve", "--port", str(port)]
    refused = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "'no-such-bucket' cannot be read" in refused.stderr, refused.stderr[-2000:]

    env["THUMBNAILS_URI"] = "s3://corpus/thumbnails"
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):  # up to ~60 s for the process to start listening
            try:
                status, _, body = request(port, f"/media/{vid('bikes')}", {"Range": "bytes=0-99"})
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.2)
        assert status == 206 and body == data[:100]
        status, _, body = request(port, f"/thumb/{vid('bikes')}")
        assert status == 200 and body[:3] == b"\xff\xd8\xff"
        assert json.loads(request(port, f"/media/{vid('evil')}")[2])["error"] == "file_not_available"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_forget_deletes_the_video_and_thumbnail_objects_and_the_page_refuses_them(s3_corpus, s3, redis_client,
                                                                                 key_prefix):  # fmt: skip
    from processing.forget import Forgetter

    cat, data, uri = s3_corpus
    sha = hashlib.sha256(data).hexdigest()
    cfg = ProcessingConfig.from_settings(num_gpus=0, labelers=(), key_prefix=key_prefix)
    with running(cat) as server:
        port = server.server_address[1]
        assert request(port, f"/thumb/{vid('bikes')}")[0] == 200
        report = Forgetter.from_config(cat, redis_client, cfg).forget(video_ids=[vid("bikes"), vid("evil")])
        assert sorted(report.files_deleted) == sorted([uri, f"s3://corpus/thumbnails/{sha}.jpg"])
        evil = [f"s3://corpus-evil/thumbnails/{sha}.jpg", f"s3://corpus-evil/videos/full/{sha}.mp4"]
        assert sorted(report.files_left) == evil
        assert f"videos/full/{sha}.mp4" not in s3.keys("corpus") and s3.keys("corpus", "thumbnails/") == []
        assert len(s3.keys("corpus-evil")) == 2  # not ours: left where it is, and listed
        assert request(port, f"/media/{vid('bikes')}")[0] == 404 and request(port, f"/thumb/{vid('bikes')}")[0] == 404
