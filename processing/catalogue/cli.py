"""Catalogue commands of ``python -m processing``: search, duplicates, export, es-setup.

Each command reads its configuration once (``CatalogueConfig.from_settings()``) and opens the
configured backend with ``open_catalogue``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from processing.catalogue import open_catalogue
from processing.catalogue.base import SearchQuery
from processing.catalogue.config import CatalogueConfig
from processing.catalogue.documents import doc_tags, public_doc
from processing.catalogue.export import FORMATS, Exporter


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
    tags = ", ".join(doc_tags(doc)[:6])
    return (
        f"{i:3d}. {hit.score:6.3f}  {hit.video_id[:16]}  {doc.get('title') or '(untitled)'}\n"
        f"     {dur} {res} source={doc.get('source')} license={doc.get('license') or '-'} tags=[{tags}]\n"
        f"     {where}"
    )


def cmd_search(args) -> int:
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
    with open_catalogue() as cat:
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
    with open_catalogue() as cat:
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
    payload = {
        "video_id": cluster["video_id"],
        "canonical": public_doc(canon),
        "duplicates": [{"similarity": d.get("similarity"), **public_doc(d)} for d in cluster["duplicates"]],
    }
    _out(args, payload, lines)
    return 0


def cmd_export(args) -> int:
    cfg = CatalogueConfig.from_settings()
    with open_catalogue(cfg) as cat:
        exporter = Exporter(cat, args.out or cfg.export_dir, args.format, include_duplicates=args.include_duplicates)
        report = exporter.run()
    _out(args, report, [f"wrote {report['rows']} row(s) to {report['file']}",
                        f"duplicate map: {report['duplicates_file']} "
                        f"({report['canonicals_with_duplicates']} canonical video(s) with copies)"])  # fmt: skip
    return 0


def cmd_es_setup(args) -> int:
    cfg = CatalogueConfig.from_settings()
    if not cfg.url:
        print("error: ELASTICSEARCH_URL is not set (the embedded catalogue needs no set-up)", file=sys.stderr)
        return 2
    from processing.catalogue.elastic import ElasticCatalogue, ServerVersionError  # the client: only here
    from processing.catalogue.kibana import kibana_import

    cat = ElasticCatalogue(config=cfg, text_vectors=False)
    try:
        report: dict[str, Any] = cat.setup()
        if args.rebuild:
            report["rebuilt"] = cat.rebuild()
    except ServerVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        cat.close()
    if report["warning"]:
        print(f"warning: {report['warning']}", file=sys.stderr)
    lines = [f"Elasticsearch API version {report['server_version']}",
             f"index template {report['template']!r} and alias {report['alias']!r} ready"
             + (f"; created {report['created_index']}" if report.get("created_index") else "")]  # fmt: skip
    if args.rebuild:
        lines.append(f"rebuilt into {report['rebuilt']['index']}; deleted {', '.join(report['rebuilt']['deleted'])}")
    kibana = args.kibana_url or cfg.kibana_url
    if kibana:
        report["kibana"] = kibana_import(kibana, cfg)
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

    p = subparsers.add_parser("export", help="write the labeled metadata and the duplicate map")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--out", help="output folder (default: DATA_DIR/export)")
    p.add_argument("--include-duplicates", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("es-setup", help="Elasticsearch index template + alias; Kibana objects")
    p.add_argument("--kibana-url", help="default: KIBANA_URL")
    p.add_argument("--rebuild", action="store_true",
                   help="reindex into a fresh index, swap the alias, delete the old index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_es_setup)
