"""``python -m processing``: work (the Ray worker pool), status, retry, and the catalogue commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m processing",
                                     description="Process crawled videos and query the catalogue.")
    parser.add_argument("--log-level", default=None, help="default: the LOG_LEVEL setting")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    work = sub.add_parser("work", help="run the Ray worker pool on the work stream")
    work.add_argument("--until-empty", action="store_true",
                      help="drain what is queued, then exit (default: wait for new items)")
    work.add_argument("--ray-address", default=None,
                      help="join a Ray cluster ('auto' or ray://host:10001); default: local Ray")
    work.add_argument("--num-workers", type=int, default=None,
                      help="decode actors (0: one per free core; default: PROCESSING_NUM_WORKERS)")
    work.add_argument("--model-workers", type=int, default=0,
                      help="embed/label actors (0: one per GPU, or 1 on the CPU)")
    work.add_argument("--batch-size", type=_positive, default=None,
                      help="videos per batch (default: PROCESSING_BATCH_SIZE)")
    work.add_argument("--frames", type=_positive, default=None, dest="frames_per_video",
                      help="frames sampled per video (default: PROCESSING_FRAMES_PER_VIDEO)")
    work.add_argument("--num-gpus", type=int, default=None,
                      help="GPUs for the model actors (default: the Ray cluster's, counted once Ray is up)")
    work.add_argument("--max-inflight", type=int, default=0,
                      help="batches in flight at most (0: two per actor)")
    work.add_argument("--claim-idle-ms", type=_positive, default=None,
                      help="reclaim entries another worker left pending this long "
                           "(default: PROCESSING_CLAIM_IDLE_MS)")
    work.add_argument("--dedup-method", choices=("phash", "embedding", "both"), default=None,
                      help="near-duplicate test: the perceptual hash alone, frame embeddings alone, "
                           "or both (default: DEDUP_METHOD, both)")
    work.add_argument("--phash-threshold", type=int, default=None, dest="phash_max_distance", metavar="BITS",
                      help="most Hamming bits between two copies' hashes (default: PHASH_MAX_DISTANCE)")
    work.add_argument("--embedding-threshold", type=float, default=None, dest="neardup_threshold",
                      metavar="COSINE", help="least frame similarity of a copy (default: NEARDUP_THRESHOLD)")
    work.add_argument("--ray-logs", action="store_true", help="show actors' output here")
    work.add_argument("--ray-dashboard", action="store_true",
                      help="start Ray's dashboard (:8265) with the local Ray (a cluster has its own)")
    work.add_argument("--metrics-port", type=int, default=None,
                      help="serve Prometheus metrics on this port (default: 0, off)")
    work.add_argument("--metrics-host", default=None,
                      help="address the metrics listen on (default: the METRICS_HOST setting)")
    work.add_argument("--no-progress", action="store_true", help="no progress line / log lines")
    work.set_defaults(func=cmd_work)

    status = sub.add_parser("status", help="counts per state for the whole project, and rates")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    retry = sub.add_parser("retry", help="put failed items back: worker failures on the work stream, "
                                         "crawl failures (downloads...) through their spider's queue")
    retry.add_argument("--stage", default=None,
                       help="only items that failed at this stage (download, probe, frames, embed, labels...)")
    retry.add_argument("--dead", action="store_true",
                       help="also requeue dead-lettered entries that hold a valid item")
    retry.set_defaults(func=cmd_retry)

    forget = sub.add_parser("forget", help="a takedown: remove a video everywhere; later crawls reject it")
    forget.add_argument("--url", action="append", default=[], metavar="URL",
                        help="a URL (or local path) where the video was found, its page, or a copy's URL")
    forget.add_argument("--video-id", action="append", default=[], metavar="ID",
                        help="a video id, or any unique prefix of it")
    forget.add_argument("--domain", action="append", default=[], metavar="DOMAIN",
                        help="every video found on this site (and its subdomains), now and later")
    forget.add_argument("--dry-run", action="store_true", help="list what would be removed; change nothing")
    forget.add_argument("--json", action="store_true", help="machine-readable output")
    forget.set_defaults(func=cmd_forget)

    try:
        from processing.catalogue import cli as catalogue_cli
        from processing.web import cli as web_cli
    except ImportError as exc:  # the catalogue's commands are optional for the worker
        logging.getLogger(__name__).debug("catalogue commands unavailable: %s", exc)
    else:
        catalogue_cli.register(sub)
        web_cli.register(sub)
    return parser


WORK_OPTIONS = ("num_workers", "model_workers", "batch_size", "frames_per_video", "num_gpus",
                "max_inflight", "claim_idle_ms", "ray_address", "ray_logs", "ray_dashboard",
                "metrics_port", "metrics_host", "dedup_method", "phash_max_distance",
                "neardup_threshold")  # fmt: skip


def _config(args):
    """The worker config from settings, with the options given on the command line.

    ``work`` counts the GPUs of the Ray cluster once it has joined it (``--num-gpus`` wins);
    the other commands need none.
    """
    from processing.config import ProcessingConfig

    given = {k: getattr(args, k) for k in WORK_OPTIONS if getattr(args, k, None) is not None}
    if args.command != "work":
        given["num_gpus"] = 0
    return ProcessingConfig.from_settings(**given)


def _dashboard_missing() -> str | None:
    """Why Ray's dashboard cannot start in this install (a minimal ``ray``), or None."""
    from ray._private.utils import get_dashboard_dependency_error

    error = get_dashboard_dependency_error()
    return f"Ray's dashboard needs packages this install lacks ({error})" if error else None


def _check_stages(cfg) -> None:
    """Build every step's stage from ``cfg`` here, before Ray starts (no model is loaded: that is
    ``setup``), so bad configuration, such as an opt-in labeler without its model, stops
    ``work`` at once with the stage's own sentence (a ValueError)."""
    from processing.pipeline import STEPS, load_stage_class

    for step in STEPS:
        load_stage_class(cfg.stages[step.name]).from_config(cfg)


def cmd_work(args) -> int:
    from processing.runtime.runner import Runner

    try:
        cfg = _config(args)
        _check_stages(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.ray_dashboard and not cfg.ray_address and _dashboard_missing():
        print(f"error: --ray-dashboard: {_dashboard_missing()} (pip install 'ray[default]', "
              "as the image does)", file=sys.stderr)  # fmt: skip
        return 2
    metrics = None
    if cfg.metrics_port:
        from processing.runtime.metrics import WorkerMetrics

        metrics = WorkerMetrics()
        try:
            metrics.serve(cfg.metrics_port, cfg.metrics_host)
        except RuntimeError as exc:  # the port is taken
            print(f"error: {exc}", file=sys.stderr)
            return 2
    runner = Runner(cfg, until_empty=args.until_empty, progress=not args.no_progress, metrics=metrics)
    try:
        stats = runner.run()
    except RuntimeError as exc:  # stages could not start (missing model, bad config)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped; unacknowledged entries will be reclaimed by the next worker",
              file=sys.stderr)
        return 130
    finally:
        if metrics:
            metrics.close()
    shown = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_status.items())) or "nothing"
    print(f"processed {stats.done} videos in {stats.batches} batches: {shown}"
          + (f"; {stats.failed_batches} batches retried" if stats.failed_batches else ""))
    return 0


def cmd_status(args) -> int:
    from crawler.connection import get_redis
    from processing.catalogue import open_catalogue
    from processing.runtime.progress import format_status, project_status

    try:
        catalogue = open_catalogue()
    except Exception as exc:  # noqa: BLE001 - counts from Redis still answer
        logging.getLogger(__name__).warning("catalogue unavailable: %s", exc)
        catalogue = None
    st = project_status(get_redis(), _config(args), catalogue=catalogue)
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else format_status(st))
    return 0


def cmd_retry(args) -> int:
    from crawler.connection import get_redis
    from processing.catalogue import open_catalogue
    from processing.runtime.stream import retry_failed

    from crawler.retry import requeue_crawl_failures

    cfg = _config(args)
    client = get_redis()
    with open_catalogue() as catalogue:
        counts = retry_failed(client, catalogue, cfg, stage=args.stage, dead=args.dead)
    crawl = requeue_crawl_failures(client, cfg.keys, stage=args.stage)
    stuck = crawl.pop("not_requeued", 0)
    total = counts["requeued"] + counts["dead"] + sum(crawl.values())
    parts = [f"{counts['requeued']} failed in the workers (back on the work stream)"]
    if args.dead:
        parts.append(f"{counts['dead']} dead-lettered")
    by_spider = ", ".join(f"{k} {v}" for k, v in sorted(crawl.items()))
    parts.append(f"{sum(crawl.values())} failed in the crawl (back in their spiders' queues"
                 + (f": {by_spider})" if by_spider else ")"))
    msg = f"requeued {total}: " + "; ".join(parts)
    if args.stage:
        msg += f" (stage {args.stage}; {counts['skipped']} failed elsewhere left alone)"
    if stuck:
        msg += f"; {stuck} crawl failure(s) have no way back (their source recorded no page to start from)"
    print(msg)
    for spider in sorted(crawl):
        print(f"  a running `scrapy crawl {spider}` takes them; or start one that stops when done: "
              f"scrapy crawl {spider} -s MAX_IDLE_TIME_BEFORE_CLOSE=10")
    if total:
        print("  then: python -m processing work --until-empty")
    return 0


def cmd_forget(args) -> int:
    from pathlib import Path

    from crawler.connection import get_redis
    from processing.catalogue import open_catalogue
    from processing.catalogue.cli import resolve_video_id
    from processing.forget import Forgetter

    if not (args.url or args.video_id or args.domain):
        print("error: forget needs --url, --video-id or --domain", file=sys.stderr)
        return 2
    local = lambda u: "://" not in u and (u.startswith(("/", "~", ".")) or Path(u).exists())  # noqa: E731
    urls = [Path(u).expanduser().absolute().as_uri() if local(u) else u for u in args.url]  # a path: its file:// URI
    try:
        cfg = _config(args)
        with open_catalogue() as catalogue:
            ids = []
            for text in args.video_id:
                vid, error = resolve_video_id(catalogue, text)
                if vid is None and len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower()):
                    vid = text.lower()  # not (or no longer) in the catalogue: its bytes are refused all the same
                if vid is None:
                    print(f"error: {error}", file=sys.stderr)
                    return 1
                ids.append(vid)
            forgetter = Forgetter.from_config(catalogue, get_redis(), cfg)
            report = forgetter.forget(urls=urls, video_ids=ids, domains=args.domain, dry_run=args.dry_run)
    except ValueError as exc:  # a domain that is no domain
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict() | {"dry_run": args.dry_run}, indent=2, sort_keys=True))
        return 0
    verb = "would forget" if args.dry_run else "forgot"
    lines = [f"{verb} {len(report.videos)} video(s)" + (":" if report.videos else "")]
    for v in report.videos:
        lines.append(f"  {v['video_id'][:16]}  {v.get('status') or 'not in the catalogue'}  "
                     f"{v.get('title') or ''}  {v.get('url') or ''}".rstrip())  # fmt: skip
    if not args.dry_run:
        lines.append(f"deleted {len(report.files_deleted)} file(s) (videos, thumbnails)")
        if report.files_left:
            lines.append(f"left {len(report.files_left)} file(s) that are not the project's copy: "
                         + ", ".join(report.files_left[:5]) + (" ..." if len(report.files_left) > 5 else ""))
        lines.append(f"near-duplicate index: {report.index_vectors} video(s) purged")
        lines.append(f"{report.tombstones} new tombstone(s): later crawls reject these videos, URLs and "
                     f"domains as opted_out: forgotten")  # fmt: skip
    print("\n".join(lines))
    return 0


def _log_level() -> str:
    """LOG_LEVEL: the one setting the CLI reads itself (every command logs, catalogue ones too)."""
    import settings

    return settings.LOG_LEVEL


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = args.log_level or _log_level()
    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args) or 0
