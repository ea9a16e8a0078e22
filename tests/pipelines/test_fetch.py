"""pipelines.fetch against hostile TLS: an HTTPS server whose certificate nobody signed is ``tls_error``."""

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crawler.errors import MediaError
from crawler.netguard import Guard
from pipelines.fetch import Limits, fetch


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"bytes")

    def log_message(self, *args):
        pass


@pytest.fixture
def self_signed_https(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_untrusted_certificate_is_a_tls_error(self_signed_https, tmp_path):
    with pytest.raises(MediaError) as err:
        fetch(self_signed_https + "/clip.mp4", tmp_path / "x", guard=Guard(True),
              limits=Limits(max_bytes=1000, timeout=10))  # fmt: skip
    assert err.value.code == "tls_error" and "certificate" in err.value.message.lower()
