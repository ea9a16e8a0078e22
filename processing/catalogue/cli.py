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
from processing.catalogue.documents import doc_copies, doc_tags, public_doc
from processing.catalogue.export import FORMATS, ExportFilter, Exporter
from processing.catalogue.shards import human


def _out(args, payload: Any, lines: list[str]) -> None:
    try:
        if getattr(args, "json", False):
            print(json.dumps(payload, ensure_ascii=False, indent=2, default=str), flush=True)
        else:
            print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `| head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def resolve_video_id(cat, text: str) -> tuple[str | None, str | None]:
    """``(video_id, None)`` for a whole id or any unique prefix of one (as git takes commit ids),
    else ``(None, the sentence to print)``."""
    text = (text or "").strip().lower()
    if text and cat.get(text) is not None:
        return text, None
    found = cat.resolve_id(text, limit=11) if len(text) >= 4 else []
    if len(found) == 1:
        return found[0], None
    if not found:
        short = " (give at least 4 characters)" if 0 < len(text) < 4 else ""
        return None, f"no video {text!r} in the catalogue{short}"
    many = "more than 10" if len(found) > 10 else str(len(found))
    return None, f"{text!r} is ambiguous: {many} videos start with it; give more characters"


def _license_text(doc) -> str:
    """``CC-BY-4.0`` (and the raw value when it says more), or ``-``."""
    lid, raw = doc.get("license_id"), doc.get("license")
    if not lid and not raw:
        return "-"
    return f"{lid}" if not raw or raw == lid else f"{lid or 'unknown'} ({raw})"


def _fmt_hit(i: int, hit) -> str:
    doc = hit.doc
    dur = f"{doc['duration']:.1f}s" if isinstance(doc.get("duration"), (int, float)) else "?s"
    res = f"{doc.get('width')}x{doc.get('height')}" if doc.get("width") else "?"
    where = doc.get("path") or doc.get("url") or ""
    tags = ", ".join(doc_tags(doc)[:6])
    return (
        f"{i:3d}. {hit.score:6.3f}  {hit.video_id[:16]}  {doc.get('title') or '(untitled)'}\n"
        f"     {dur} {res} source={doc.get('source')} license={_license_text(doc)} tags=[{tags}]\n"
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
            args.similar, error = resolve_video_id(cat, args.similar)
            if error:
                print(f"error: {error}", file=sys.stderr)
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


def _place_lines(rec, indent: str) -> list[str]:
    """Where one copy was found: its URL or path, its page, source and licence."""
    where = rec.get("url") or rec.get("path") or "?"
    extra = [f"page {rec['page_url']}"] if rec.get("page_url") else []
    extra.append(f"source={rec.get('source') or '-'} license={_license_text(rec)}")
    if rec.get("path") and rec.get("path") != where:
        extra.append(f"file {rec['path']}")
    return [f"{indent}{where}", f"{indent}  " + "  ".join(extra)]


def cmd_duplicates(args) -> int:
    with open_catalogue() as cat:
        video_id, error = resolve_video_id(cat, args.video_id)
        cluster = cat.duplicates(video_id) if video_id else None
    if cluster is None:
        print(f"error: {error or f'no video {args.video_id!r} in the catalogue'}", file=sys.stderr)
        return 1
    canon = cluster["canonical"]
    copies = doc_copies(canon)
    exact = [c for c in copies if c.get("kind", "exact") == "exact" and c.get("video_id") in (None, canon["video_id"])]
    lines = [f"canonical {canon['video_id']}  {canon.get('title') or ''}", *_place_lines(canon, "  found at ")]
    for c in exact:
        lines += _place_lines(c, "  same bytes at ")
    for d in cluster["duplicates"]:
        sim = f"{d['similarity']:.4f}" if isinstance(d.get("similarity"), (int, float)) else "?"
        lines.append(f"  copy {d['video_id']}  similarity={sim}  {d.get('title') or ''}")
        lines += _place_lines(d, "    found at ")
        for c in doc_copies(d):
            lines += _place_lines(c, "    same bytes at ")
    if not cluster["duplicates"] and not exact:
        lines.append("  (no duplicates recorded)")
    places = 1 + len(exact) + sum(1 + len(doc_copies(d)) for d in cluster["duplicates"])
    lines.append(f"{places} place(s): {1 + len(cluster['duplicates'])} video(s), "
                 f"{places - 1 - len(cluster['duplicates'])} byte-identical copies")  # fmt: skip
    payload = {
        "video_id": cluster["video_id"],
        "canonical": public_doc(canon),
        "copies": exact,
        "duplicates": [{"similarity": d.get("similarity"), **public_doc(d)} for d in cluster["duplicates"]],
    }
    _out(args, payload, lines)
    return 0


def cmd_export(args) -> int:
    cfg = CatalogueConfig.from_settings()
    fmt = "clips" if args.clips else "embeddings" if args.embeddings else args.format
    options = {"shard_size": args.shard_size, "shard_count": args.shard_count, "embedding_model": args.embedding_model}
    try:
        filters = ExportFilter(min_duration=args.min_duration, max_duration=args.max_duration,
                               min_width=args.min_width, min_height=args.min_height, license=args.license,
                               tags=args.tag or [])  # fmt: skip
        with open_catalogue(cfg) as cat:
            exporter = Exporter(cat, args.out or cfg.export_dir, fmt, include_duplicates=args.include_duplicates,
                                filters=filters, nsfw=args.exclude_nsfw,
                                **{k: v for k, v in options.items() if v is not None})  # fmt: skip
            report = exporter.run()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _out(args, report, export_lines(report))
    return 0


def export_lines(report: dict[str, Any]) -> list[str]:
    """What ``export`` prints: what it wrote, what it left out and why, the duplicate map."""
    fmt = report["format"]
    if fmt == "webdataset":
        lines = [f"wrote {report['rows']} video(s) into {report['shards']} shard(s), {human(report['bytes'])}: "
                 f"{report['file'] or '(none)'}", f"shard index: {report['index_file']}"]  # fmt: skip
        if report["missing"]:
            lines.append("samples without: " + ", ".join(f"{k} {n}" for k, n in report["missing"].items()))
    elif fmt == "embeddings":
        lines = [f"wrote {report['rows']} vector(s) of {report['embedding_model'] or '-'} "
                 f"(dim {report['dim']}) to {report['file']}"]  # fmt: skip
    elif fmt == "clips":
        modes = ", ".join(f"{m} {n}" for m, n in report["modes"].items()) or "none"
        lines = [f"wrote {report['rows']} clip(s) of {report['videos']} video(s) into {report['clip_dir']} "
                 f"({modes})", f"clip list: {report['file']}"]  # fmt: skip
    else:
        lines = [f"wrote {report['rows']} row(s) to {report['file']}"]
    if report.get("skipped"):
        lines.append("skipped: " + ", ".join(f"{k} {n}" for k, n in report["skipped"].items()))
    if report["filtered"]:
        lines.append("left out by filters: " + ", ".join(f"{k} {n}" for k, n in report["filtered"].items()))
    if "nsfw_unlabeled" in report:
        lines.append(f"nsfw: {report['filtered'].get('nsfw', 0)} flagged video(s) left out (--include-nsfw keeps "
                     f"them); {report['nsfw_unlabeled']} written had no nsfw label")  # fmt: skip
    lines.append(f"duplicate map: {report['duplicates_file']} "
                 f"({report['canonicals_with_duplicates']} canonical video(s) with copies)")  # fmt: skip
    return lines


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
    p.add_argument("--similar", metavar="VIDEO_ID", help="nearest kept videos to this one (an id or a unique prefix)")
    p.add_argument("--tag", action="append", help="require this tag (repeatable)")
    p.add_argument("--source")
    p.add_argument("--license", help="an id (CC-BY-4.0), a family (cc-by: CC-BY-* only, cc-by-sa, cc-by-nc, "
                                     "cc-by-nd, cc-by-nc-sa, cc-by-nc-nd, cc0, public-domain, unknown) or open")
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

    p = subparsers.add_parser("duplicates", help="a video's duplicate cluster: canonical + copies, every place")
    p.add_argument("video_id", help="the id, or any unique prefix of it (search prints 16 characters)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_duplicates)

    p = subparsers.add_parser("export", help="a manifest, WebDataset shards, embeddings or scene clips")
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="jsonl, csv, parquet (manifests); webdataset (tar shards: video, json, jpg, npy); "
                        "embeddings (Parquet vectors); clips (one file per scene)")  # fmt: skip
    p.add_argument("--clips", action="store_true", help="same as --format clips")
    p.add_argument("--embeddings", action="store_true", help="same as --format embeddings")
    p.add_argument("--out", help="output folder, or a bucket prefix s3://... / gs://... (default: DATA_DIR/export)")
    p.add_argument("--include-duplicates", action="store_true", help="manifests: duplicates too")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--shard-size", metavar="SIZE", help="webdataset: bytes per shard at most, e.g. 500MB, 1GB (default), 2GiB")
    size.add_argument("--shard-count", type=_positive_int, metavar="N", help="webdataset: spread the videos over N shards")
    p.add_argument("--embedding-model", metavar="MODEL", help="embeddings: the model whose vectors to write (default: the first met)")
    p.add_argument("--min-duration", type=float, metavar="SECONDS")
    p.add_argument("--max-duration", type=float, metavar="SECONDS")
    p.add_argument("--min-width", type=int, metavar="PIXELS")
    p.add_argument("--min-height", type=int, metavar="PIXELS")
    p.add_argument("--license", dest="license", metavar="LICENSE",
                   help="an SPDX id (CC-BY-4.0), a family (cc-by, cc-by-sa, cc0...) or 'open'")
    p.add_argument("--tag", action="append", metavar="TAG", help="require this tag (repeatable)")
    nsfw = p.add_mutually_exclusive_group()
    nsfw.add_argument("--exclude-nsfw", "--no-nsfw", dest="exclude_nsfw", action="store_const", const=True,
                      help="leave out what the nsfw labeler flagged (default for webdataset, embeddings, clips)")
    nsfw.add_argument("--include-nsfw", dest="exclude_nsfw", action="store_const", const=False,
                      help="keep NSFW-flagged videos (default for jsonl, csv, parquet)")
    p.set_defaults(exclude_nsfw=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("es-setup", help="Elasticsearch index template + alias; Kibana objects")
    p.add_argument("--kibana-url", help="default: KIBANA_URL")
    p.add_argument("--rebuild", action="store_true",
                   help="reindex into a fresh index, swap the alias, delete the old index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_es_setup)
