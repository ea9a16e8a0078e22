"""Real local HTTP servers standing in for single Elasticsearch and Kibana endpoints (stand-ins, not them).

Each answers like the real endpoint does for the requests under test: bulk replies scripted
per document (429, 503, 400), a recorder of every request ElasticCatalogue sends, Kibana's
saved-objects import, and an Elasticsearch 8 refusing the 9.x client's compatibility headers.
"""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ES_HEADERS = {"Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
              "X-Elastic-Product": "Elasticsearch"}  # fmt: skip
ES9_INFO = {"name": "stand-in", "cluster_name": "stand-in", "version": {"number": "9.1.0"}}


@contextmanager
def serving(handler):
    """``handler`` served by a real HTTP server on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class StandIn(BaseHTTPRequestHandler):
    """Reads the request body, answers JSON with the given headers; no access log."""

    headers_out = ES_HEADERS

    def log_message(self, *a):
        pass

    def body(self) -> str:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def send_json(self, status: int, payload) -> None:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        for name, value in self.headers_out.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class BulkStandIn(StandIn):
    """Answers /_bulk from a script of replies: an int (whole-request status) or a dict id -> status."""

    script: list = []
    seen: list = []

    def do_POST(self):
        lines = [json.loads(x) for x in self.body().splitlines() if x.strip()]
        ids = [a["index"]["_id"] for a in lines[0::2]]
        self.seen.append((self.path, ids))
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, int):
            return self.send_json(step, {"error": {"type": "es_rejected_execution_exception"}, "status": step})
        items = []
        for _id in ids:
            status = step.get(_id, 201)
            item = {"_index": "videos-000001", "_id": _id, "status": status}
            if status >= 300:
                item["error"] = {"type": "mapper_parsing_exception" if status == 400 else "unavailable", "reason": "x"}
            items.append({"index": item})
        self.send_json(200, {"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items), "items": items})

    do_PUT = do_POST  # the client sends _bulk as PUT


class RecordingStandIn(StandIn):
    """Records every request; answers like Elasticsearch 9 would for the few routes used here."""

    calls: list = []

    def _answer(self):
        raw, path = self.body(), self.path.split("?")[0]
        self.calls.append((self.command, path, raw))
        status, payload = 200, {"acknowledged": True}
        if path == "/" and self.command == "GET":
            payload = ES9_INFO
        elif self.command == "HEAD" and path.startswith("/_alias/"):
            status, payload = 404, None
        elif path == "/_bulk":
            ids = [json.loads(x)["index"]["_id"] for x in raw.splitlines()[0::2] if x.strip()]
            payload = {"errors": False, "items": [{"index": {"_id": i, "status": 201}} for i in ids]}
        elif "/_doc/" in path:
            status, payload = 404, {"_id": path.rsplit("/", 1)[1], "found": False}
        elif path.endswith("/_search"):
            payload = {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []},
                       "aggregations": {"tags": {"buckets": []}}}  # fmt: skip
        self.send_json(status, payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _answer


class Es8StandIn(StandIn):
    """Refuses every request as Elasticsearch 8 refuses the 9.x client's ``compatible-with=9`` headers."""

    headers_out = {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}
    REASON = "Invalid media-type value on headers [Accept, Content-Type]"

    def _refuse(self):
        self.body()
        error = {"type": "media_type_header_exception", "reason": self.REASON,
                 "caused_by": {"type": "status_exception", "reason": "Accept version must be either version 8 or 7, "
                               f"but found 9. Accept={self.headers.get('Accept')}"}}  # fmt: skip
        self.send_json(400, {"error": {"root_cause": [error], **error}, "status": 400})

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _refuse


class KibanaStandIn(StandIn):
    """Kibana's saved-objects import endpoint (not Kibana): records each upload, counts its objects."""

    headers_out = {"Content-Type": "application/json"}
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("kbn-xsrf"), self.headers["Content-Type"], body))
        n = sum(1 for line in body.split(b"\r\n\r\n", 1)[1].splitlines() if line.startswith(b"{"))
        self.send_json(200, {"success": True, "successCount": n})
