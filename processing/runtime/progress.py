"""Progress of a work run (\\r line on a terminal, log lines otherwise) and project-wide status.

``RateBook`` keeps per-minute counters of processing outcomes in Redis, written by every
worker, so ``status`` can give rates for the whole project. ``StageTotals`` adds up the
counters every batch brings from the stages (outcomes, videos, seconds per stage).
``project_status`` gathers the ledger's counts (crawl and processing outcomes), the stream's
in-progress / backlog / dead-letter figures, those rates and the stage totals into one dict.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO

import redis

from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from processing.config import ProcessingConfig
from processing.pipeline import STEP_NAMES
from processing.runtime.stream import WorkStream

log = logging.getLogger(__name__)

RATE_WINDOWS = (1, 5, 60)  # minutes


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RateBook:
    """Per-minute outcome counters in Redis (``RedisKeys.rate_minute``), for the rates of ``status``."""

    TTL_S = 2 * 3600

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.keys = keys

    def add(self, counts: dict[str, int], now: float | None = None) -> None:
        counts = {k: v for k, v in counts.items() if v}
        if not counts:
            return
        key = self.keys.rate_minute(int((now or time.time()) // 60))
        pipe = self.client.pipeline()
        for status, n in counts.items():
            pipe.hincrby(key, status, n)
        pipe.expire(key, self.TTL_S)
        pipe.execute()

    def per_minute(self, minutes: int, now: float | None = None) -> dict[str, float]:
        """Average outcomes per minute over the last ``minutes`` whole minutes + the current."""
        current = int((now or time.time()) // 60)
        pipe = self.client.pipeline()
        for m in range(current - minutes, current + 1):
            pipe.hgetall(self.keys.rate_minute(m))
        totals: dict[str, int] = {}
        for row in pipe.execute():
            for k, v in row.items():
                totals[_text(k)] = totals.get(_text(k), 0) + int(v)
        return {k: round(v / minutes, 2) for k, v in sorted(totals.items())}


class StageTotals:
    """Every stage's counters over the whole project, in one Redis hash (``RedisKeys.stage_stats``).

    Fields are ``<stage>:<counter>``: outcome counts (``frames:ok``, ``neardup:duplicate``...),
    ``<stage>:videos`` and ``<stage>:seconds``, added by the writer from each written batch.
    """

    def __init__(self, client: redis.Redis, keys: RedisKeys):
        self.client = client
        self.key = keys.stage_stats

    def add(self, stats: dict[str, dict[str, float]]) -> None:
        pipe = self.client.pipeline()
        for stage, counters in stats.items():
            for name, value in counters.items():
                if name == "seconds":
                    pipe.hincrbyfloat(self.key, f"{stage}:{name}", float(value))
                elif value:
                    pipe.hincrby(self.key, f"{stage}:{name}", int(value))
        pipe.execute()

    def totals(self) -> dict[str, dict[str, float]]:
        """Stage -> counters, the pipeline's stages first in their order, with seconds per video."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.client.hgetall(self.key).items():
            stage, _, name = _text(field).partition(":")
            out.setdefault(stage, {})[name] = round(float(value), 3) if name == "seconds" else int(value)
        for counters in out.values():
            if counters.get("videos"):
                counters["seconds_per_video"] = round(counters.get("seconds", 0.0) / counters["videos"], 4)
        order = {name: i for i, name in enumerate(STEP_NAMES)}
        return dict(sorted(out.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def project_status(client: redis.Redis, cfg: ProcessingConfig, catalogue=None) -> dict:
    """Counts for the whole project: ledger states, stream figures, rates, stages, catalogue."""
    stream = WorkStream.from_config(client, cfg, consumer="status")
    s = stream.stats()
    counts = Ledger(client, cfg.keys).counts()
    book = RateBook(client, cfg.keys)
    out = {
        "states": {k: counts.get(k, 0) for k in
                   ("new", "queued", "indexed", "duplicate", "rejected", "failed")},  # fmt: skip
        "queued": counts.get("queued", 0),
        "in_progress": s["pending"],
        "backlog": s["backlog"],
        "indexed": counts.get("indexed", 0),
        "duplicate": counts.get("duplicate", 0),
        "rejected": counts.get("rejected", 0),
        "failed": counts.get("failed", 0),
        "dead_lettered": s["dead"],
        "stream": {"key": stream.key, "group": stream.group, "length": s["length"],
                   "consumers": s["consumers"]},  # fmt: skip
        "rates_per_minute": {f"last_{m}m": book.per_minute(m) for m in RATE_WINDOWS},
        "stages": StageTotals(client, cfg.keys).totals(),
    }
    if catalogue is not None:
        try:
            out["catalogue"] = catalogue.counts()
        except Exception as exc:  # noqa: BLE001 - status must answer even if the index is down
            out["catalogue"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def format_status(st: dict) -> str:
    """The human-readable form of ``project_status``."""
    backlog = "unknown" if st["backlog"] is None else st["backlog"]
    lines = [
        f"queued        {st['queued']:>8}   (in progress {st['in_progress']}, "
        f"not yet delivered {backlog})",
    ]
    for name in ("indexed", "duplicate", "rejected", "failed"):
        lines.append(f"{name:<13} {st[name]:>8}")
    lines.append(f"dead-lettered {st['dead_lettered']:>8}   (stream {st['stream']['key']}:dead; "
                 "those with a URL count as failed above; `retry --dead` requeues them)")
    if st["states"].get("new"):
        lines.append(f"new           {st['states']['new']:>8}   (in the crawl's pipelines)")
    for window, rates in st["rates_per_minute"].items():
        shown = ", ".join(f"{k} {v:g}/min" for k, v in rates.items()) or "-"
        lines.append(f"rate {window:<8} {shown}")
    for stage, counters in st.get("stages", {}).items():
        lines.append(f"stage {stage:<7} {_stage_line(counters)}")
    if "catalogue" in st:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(st["catalogue"].items())) or "empty"
        lines.append(f"catalogue     {shown}")
    return "\n".join(lines)


def _stage_line(counters: dict) -> str:
    """``12 videos in 3.2 s (0.27 s/video): ok 11, undecodable 1``."""
    timing = {"videos", "seconds", "seconds_per_video"}
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if k not in timing) or "-"
    if not counters.get("videos"):
        return shown
    return (f"{counters['videos']} videos in {counters.get('seconds', 0):g} s "
            f"({counters.get('seconds_per_video', 0):g} s/video): {shown}")  # fmt: skip


class Progress:
    """Items done / queued, rate and ETA: a \\r line on a terminal, else a log line now and then.

    ``remaining`` is a callable answering how many entries are still to do (backlog +
    pending); it is polled at most every ``poll_s`` seconds.
    """

    def __init__(self, remaining: Callable[[], int | None], *, out: TextIO | None = None,
                 tty: bool | None = None, interval_s: float = 10.0, poll_s: float = 2.0):  # fmt: skip
        self.remaining_fn = remaining
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.interval_s = 0.5 if self.tty else interval_s
        self.poll_s = poll_s
        self.start = time.monotonic()
        self.done = 0
        self.by_status: dict[str, int] = {}
        self._remaining: int | None = None
        self._polled = 0.0
        self._shown = 0.0

    def add(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            self.by_status[k] = self.by_status.get(k, 0) + v
            self.done += v
        self.show()

    def line(self) -> str:
        now = time.monotonic()
        if now - self._polled >= self.poll_s:
            try:
                self._remaining = self.remaining_fn()
            except redis.RedisError:
                pass
            self._polled = now
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed * 60
        rem = self._remaining
        total = "?" if rem is None else self.done + rem
        eta = "-"
        if rem is not None and self.done:
            secs = rem / (self.done / elapsed)
            eta = time.strftime("%H:%M:%S", time.gmtime(secs)) if secs < 86400 else ">1d"
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        return f"done {self.done}/{total} ({parts or 'none yet'}), {rate:.1f}/min, ETA {eta}"

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self.interval_s:
            return
        self._shown = now
        if self.tty:
            self.out.write("\r" + self.line().ljust(79)[:200])
            self.out.flush()
        else:
            log.info("progress: %s", self.line())

    def close(self) -> None:
        self.show(force=True)
        if self.tty:
            self.out.write("\n")
            self.out.flush()
