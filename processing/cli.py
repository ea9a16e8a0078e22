"""``python -m processing``: work (the Ray worker pool), status, retry, and the catalogue commands."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import settings


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m processing",
                                     description="Process crawled videos and query the catalogue.")
    parser.add_argument("--log-level", default=settings.LOG_LEVEL, help="default: %(default)s")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    work = sub.add_parser("work", help="run the Ray worker pool on the work stream")
    work.add_argument("--until-empty", action="store_true",
                      help="drain what is queued, then exit (default: wait for new items)")
    work.add_argument("--ray-address", default=None,
                      help="join a Ray cluster ('auto' or ray://host:10001); default: local Ray")
    work.add_argument("--num-workers", type=int, default=settings.PROCESSING_NUM_WORKERS,
                      help="decode actors (0: one per free core; default: %(default)s)")
    work.add_argument("--model-workers", type=int, default=0,
                      help="embed/label actors (0: one per GPU, or 1 on the CPU)")
    work.add_argument("--batch-size", type=_positive, default=settings.PROCESSING_BATCH_SIZE,
                      help="videos per batch (default: %(default)s)")
    work.add_argument("--frames", type=_positive, default=settings.PROCESSING_FRAMES_PER_VIDEO,
                      help="frames sampled per video (default: %(default)s)")
    work.add_argument("--num-gpus", type=int, default=None,
                      help="GPUs for the model actors (default: those torch sees)")
    work.add_argument("--max-inflight", type=int, default=0,
                      help="batches in flight at most (0: two per actor)")
    work.add_argument("--claim-idle-ms", type=_positive, default=settings.PROCESSING_CLAIM_IDLE_MS,
                      help="reclaim entries another worker left pending this long")
    work.add_argument("--ray-logs", action="store_true", help="show actors' output here")
    work.add_argument("--no-progress", action="store_true", help="no progress line / log lines")
    work.set_defaults(func=cmd_work)

    status = sub.add_parser("status", help="counts per state for the whole project, and rates")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    retry = sub.add_parser("retry", help="put failed items back on the work stream")
    retry.add_argument("--stage", default=None,
                       help="only items that failed at this stage (frames, embed, labels...)")
    retry.add_argument("--dead", action="store_true",
                       help="also requeue dead-lettered entries that hold a valid item")
    retry.set_defaults(func=cmd_retry)

    try:
        from processing import search_cli
    except ImportError as exc:  # the catalogue's commands are optional for the worker
        logging.getLogger(__name__).debug("catalogue commands unavailable: %s", exc)
    else:
        search_cli.register(sub)
    return parser


def _config(args):
    from processing.config import ProcessingConfig

    kwargs = dict(num_workers=args.num_workers, model_workers=args.model_workers,
                  batch_size=args.batch_size, frames_per_video=args.frames,
                  max_inflight=args.max_inflight, claim_idle_ms=args.claim_idle_ms,
                  ray_address=args.ray_address, ray_logs=args.ray_logs)  # fmt: skip
    if args.num_gpus is not None:
        kwargs["num_gpus"] = args.num_gpus
    return ProcessingConfig(**kwargs)


def cmd_work(args) -> int:
    from processing.runner import Runner

    try:
        cfg = _config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runner = Runner(cfg, until_empty=args.until_empty, progress=not args.no_progress)
    try:
        stats = runner.run()
    except RuntimeError as exc:  # stages could not start (missing model, bad config)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped; unacknowledged entries will be reclaimed by the next worker",
              file=sys.stderr)
        return 130
    shown = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_status.items())) or "nothing"
    print(f"processed {stats.done} videos in {stats.batches} batches: {shown}"
          + (f"; {stats.failed_batches} batches retried" if stats.failed_batches else ""))
    return 0


def cmd_status(args) -> int:
    from crawler.connection import get_redis
    from processing.catalogue import open_catalogue
    from processing.progress import format_status, project_status

    try:
        catalogue = open_catalogue()
    except Exception as exc:  # noqa: BLE001 - counts from Redis still answer
        logging.getLogger(__name__).warning("catalogue unavailable: %s", exc)
        catalogue = None
    st = project_status(get_redis(), catalogue=catalogue)
    print(json.dumps(st, indent=2, sort_keys=True) if args.json else format_status(st))
    return 0


def cmd_retry(args) -> int:
    from crawler.connection import get_redis
    from processing.catalogue import open_catalogue
    from processing.stream import retry_failed

    with open_catalogue() as catalogue:
        counts = retry_failed(get_redis(), catalogue, stage=args.stage, dead=args.dead)
    msg = f"requeued {counts['requeued']} failed items"
    if args.stage:
        msg += f" (stage {args.stage}; {counts['skipped']} failed elsewhere left alone)"
    if args.dead:
        msg += f", {counts['dead']} dead-lettered"
    print(msg)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args) or 0
