"""Kibana saved objects: import ``deploy/kibana/*.ndjson`` (data view, saved search, visualisations, dashboard).

The objects have fixed ids and are imported with ``overwrite=true``, so importing again
replaces them (idempotent). The data view is pointed at the configured alias
(``ELASTICSEARCH_INDEX``) as it is sent.
"""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from pathlib import Path

from processing.catalogue.config import CatalogueConfig

KIBANA_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kibana"


def auth_headers(cfg: CatalogueConfig) -> dict[str, str]:
    """Kibana's API key, else Elasticsearch's API key, else basic auth, else nothing."""
    if cfg.kibana_api_key or cfg.api_key:
        return {"Authorization": f"ApiKey {cfg.kibana_api_key or cfg.api_key}"}
    if cfg.username:
        token = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def saved_objects(path: Path, index: str) -> bytes:
    """The NDJSON of ``path`` with every data view's pattern set to ``index``."""
    objs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for obj in objs:
        if obj.get("type") == "index-pattern":
            obj["attributes"]["title"] = index
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objs).encode()


def kibana_import(kibana_url: str, cfg: CatalogueConfig, files: list[Path] | None = None,
                  timeout: float = 30.0) -> list[dict]:  # fmt: skip
    """POST each NDJSON file to Kibana's saved-objects ``_import?overwrite=true``; returns the replies."""
    files = files or sorted(KIBANA_DIR.glob("*.ndjson"))
    headers = {"kbn-xsrf": "true", **auth_headers(cfg)}
    replies = []
    for path in files:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n"
        ).encode() + saved_objects(path, cfg.index) + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            kibana_url.rstrip("/") + "/api/saved_objects/_import?overwrite=true", data=body, method="POST",
            headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            reply = json.loads(resp.read() or b"{}")
        if not reply.get("success", False):
            raise RuntimeError(f"Kibana import of {path.name} failed: {json.dumps(reply.get('errors'))[:500]}")
        replies.append({"file": path.name, **reply})
    return replies
