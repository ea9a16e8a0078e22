"""Catalogue commands of ``python -m processing`` (search, duplicates, serve, export, es-setup)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import settings


def _catalogue():
    from processing.catalogue import open_catalogue

    return open_catalogue()


def _out(args, payload: Any, lines: list[str]) -> None:
    try:
        if getattr(args, "json", False):
            print(json.dumps(payload, ensure_ascii=False, indent=2, default=str), flush=True)
        else:
            print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `| head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _fmt_hit(i: int, hit) -> str:
    doc = hit.doc
    dur = f"{doc['duration']:.1f}s" if isinstance(doc.get("duration"), (int, float)) else "?s"
    res = f"{doc.get('width')}x{doc.get('height')}" if doc.get("width") else "?"
    where = doc.get("path") or doc.get("url") or ""
    from processing.search import doc_tags

    tags = ", ".join(doc_tags(doc)[:6])
    return (
        f"{i:3d}. {hit.score:6.3f}  {hit.video_id[:16]}  {doc.get('title') or '(untitled)'}\n"
        f"     {dur} {res} source={doc.get('source')} license={doc.get('license') or '-'} tags=[{tags}]\n"
        f"     {where}"
    )


def cmd_search(args) -> int:
    from processing.search import SearchQuery

    try:
        query = SearchQuery(
            text=" ".join(args.text or []), tags=args.tag or [], source=args.source, license=args.license,
            min_duration=args.min_duration, max_duration=args.max_duration, min_width=args.min_width,
            min_height=args.min_height, status=args.status, page=args.page, per_page=args.limit,
            semantic=not args.no_semantic,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with _catalogue() as cat:
        if args.similar:
            if cat.get(args.similar) is None:
                print(f"error: no video {args.similar!r} in the catalogue", file=sys.stderr)
                return 1
            result = cat.similar(args.similar, query)
        else:
            result = cat.search(query)
    head = f"{result.total} result(s)" + (f" similar to {args.similar}" if args.similar else "")
    lines = [head] + [_fmt_hit(query.offset + i + 1, h) for i, h in enumerate(result.hits)]
    for name, values in result.facets.items():
        if values:
            lines.append(f"{name}: " + ", ".join(f"{v} ({n})" for v, n in values[:10]))
    _out(args, result.to_dict(), lines)
    return 0


def cmd_duplicates(args) -> int:
    with _catalogue() as cat:
        cluster = cat.duplicates(args.video_id)
    if cluster is None:
        print(f"error: no video {args.video_id!r} in the catalogue", file=sys.stderr)
        return 1
    canon = cluster["canonical"]
    lines = [f"canonical {canon['video_id']}  {canon.get('title') or ''}  {canon.get('path') or canon.get('url') or ''}"]
    for d in cluster["duplicates"]:
        sim = f"{d['similarity']:.4f}" if isinstance(d.get("similarity"), (int, float)) else "?"
        lines.append(f"  copy {d['video_id']}  similarity={sim}  {d.get('path') or d.get('url') or ''}")
    if not cluster["duplicates"]:
        lines.append("  (no duplicates recorded)")
    from processing.search import public_doc

    payload = {
        "video_id": cluster["video_id"],
        "canonical": public_doc(canon),
        "duplicates": [{"similarity": d.get("similarity"), **public_doc(d)} for d in cluster["duplicates"]],
    }
    _out(args, payload, lines)
    return 0


def cmd_serve(args) -> int:
    from processing.web.server import SearchServer

    cat = _catalogue()
    server = SearchServer(cat, host=args.host, port=args.port)
    searcher = getattr(cat, "searcher", None)  # the embedded engine: embed new texts in the background
    if searcher is not None and settings.SEARCH_SEMANTIC:
        import threading

        searcher.embed_limit = settings.SEARCH_EMBED_PER_QUERY
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


def cmd_export(args) -> int:
    from processing.export import Exporter

    out = args.out or str(settings.DATA_DIR) + "/export"
    with _catalogue() as cat:
        report = Exporter(cat, out, args.format, include_duplicates=args.include_duplicates).run()
    _out(args, report, [f"wrote {report['rows']} row(s) to {report['file']}",
                        f"duplicate map: {report['duplicates_file']} "
                        f"({report['canonicals_with_duplicates']} canonical video(s) with copies)"])  # fmt: skip
    return 0


def cmd_es_setup(args) -> int:
    from processing.elastic import ElasticCatalogue, kibana_import

    if not settings.ELASTICSEARCH_URL:
        print("error: ELASTICSEARCH_URL is not set (the embedded catalogue needs no set-up)", file=sys.stderr)
        return 2
    cat = ElasticCatalogue(settings.ELASTICSEARCH_URL, text_vectors=False)
    try:
        report: dict[str, Any] = cat.setup()
        if args.rebuild:
            report["rebuilt_into"] = cat.rebuild()
    finally:
        cat.close()
    lines = [f"index template {report['template']!r} and alias {report['alias']!r} ready"
             + (f"; created {report['created_index']}" if report.get("created_index") else "")]  # fmt: skip
    kibana = args.kibana_url or settings.KIBANA_URL
    if kibana:
        report["kibana"] = kibana_import(kibana)
        lines.append("imported Kibana objects: " + ", ".join(
            f"{r['file']} ({r.get('successCount', 0)} objects)" for r in report["kibana"]))  # fmt: skip
    else:
        lines.append("KIBANA_URL not set: Kibana saved objects not imported (deploy/kibana/*.ndjson)")
    _out(args, report, lines)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def register(subparsers) -> None:
    """Add the catalogue's sub-commands to the CLI's argparse sub-parsers."""
    p = subparsers.add_parser("search", help="search the catalogue (text, filters, --similar)")
    p.add_argument("text", nargs="*", help="words to search for (empty: list, newest first)")
    p.add_argument("--similar", metavar="VIDEO_ID", help="nearest kept videos to this one")
    p.add_argument("--tag", action="append", help="require this tag (repeatable)")
    p.add_argument("--source")
    p.add_argument("--license")
    p.add_argument("--min-duration", type=float)
    p.add_argument("--max-duration", type=float)
    p.add_argument("--min-width", type=int)
    p.add_argument("--min-height", type=int)
    p.add_argument("--status", default="indexed", help="indexed (default), duplicate, failed, rejected or any")
    p.add_argument("--limit", type=_positive_int, default=20)
    p.add_argument("--page", type=_positive_int, default=1)
    p.add_argument("--no-semantic", action="store_true", help="BM25 only (no text model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = subparsers.add_parser("duplicates", help="a video's duplicate cluster: canonical + copies")
    p.add_argument("video_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_duplicates)

    p = subparsers.add_parser("serve", help="the search page and its JSON API")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("export", help="write the labeled metadata and the duplicate map")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    p.add_argument("--out", help="output folder (default: DATA_DIR/export)")
    p.add_argument("--include-duplicates", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("es-setup", help="Elasticsearch index template + alias; Kibana objects")
    p.add_argument("--kibana-url", help="default: KIBANA_URL")
    p.add_argument("--rebuild", action="store_true", help="reindex into a fresh index and swap the alias")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_es_setup)
