"""The ``serve`` command of ``python -m processing``: the search page over the configured catalogue."""

from __future__ import annotations

import sys
import threading

from crawler import locations
from processing.catalogue import open_catalogue
from processing.catalogue.config import CatalogueConfig
from processing.web.server import SearchServer


def cmd_serve(args) -> int:
    cfg = CatalogueConfig.from_settings()
    cat = open_catalogue(cfg)
    try:
        server = SearchServer(cat, host=args.host, port=args.port, token=args.token)
    except ValueError as exc:  # e.g. a non-loopback host without a token, a root that is no bucket prefix
        cat.close()
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    try:  # bucket roots (FILES_STORE, THUMBNAILS_URI, SEARCH_MEDIA_ROOTS): packages there, buckets answer
        for root in server.files.bucket_roots():
            locations.check(root)
    except locations.StorageError as exc:
        server.server_close()
        cat.close()
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    searcher = getattr(cat, "searcher", None)  # the embedded engine: embed new texts in the background
    if searcher is not None and cfg.semantic:
        searcher.embed_limit = cfg.embed_per_query
        threading.Thread(target=searcher.warm_text_vectors, name="warm-text-vectors", daemon=True).start()
    print(f"search page on {server.url}  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        cat.close()
    return 0


def register(subparsers) -> None:
    """Add ``serve`` to the CLI's argparse sub-parsers."""
    p = subparsers.add_parser("serve", help="the search page and its JSON API")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token", default=None, help="required on every request; needed for a non-loopback "
                   "--host (default: SEARCH_TOKEN)")  # fmt: skip
    p.set_defaults(func=cmd_serve)
