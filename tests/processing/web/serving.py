"""The search server in a test: started in the background on a free loopback port, and one request to it."""

from __future__ import annotations

import http.client
from contextlib import contextmanager

from processing.web.server import SearchServer


@contextmanager
def running(cat, **kwargs):
    server = SearchServer(cat, port=0, **kwargs)
    server.start_background()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(target, path, headers=None, method="GET", timeout=20):
    """(status, headers, body) of one request to ``target`` (a running server or its port);
    redirects are not followed."""
    port = target if isinstance(target, int) else target.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()
