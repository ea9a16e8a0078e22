"""Every Redis key the project writes, named in one place (``RedisKeys(prefix)``).

The project's own keys start with ``KEY_PREFIX`` (default ``vp``). scrapy-redis' per-spider
keys keep their documented names (``<spider>:start_urls``, ``<spider>:requests``,
``<spider>:dupefilter``) so that ``redis-cli lpush web:start_urls ...`` works as written;
they are named here too so nothing else builds a key by hand.

Nothing derives a key at import time: build ``RedisKeys(prefix)`` where the prefix is known
(from Scrapy settings in ``from_crawler``, from ``ProcessingConfig`` in the workers), so
``-s KEY_PREFIX=x`` and ``KEY_PREFIX=x`` move every key together.
"""

from __future__ import annotations

from dataclasses import dataclass

STREAM_GROUP = "workers"  # the consumer group every worker joins


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one prefix."""

    prefix: str = "vp"

    def __post_init__(self):
        if not self.prefix or ":" in self.prefix or any(c.isspace() for c in self.prefix):
            raise ValueError(f"KEY_PREFIX must be a non-empty word without ':' or spaces, got {self.prefix!r}")

    @classmethod
    def from_settings(cls, settings) -> "RedisKeys":
        """From Scrapy ``Settings`` or the ``settings`` module (``KEY_PREFIX``)."""
        get = getattr(settings, "get", None)
        prefix = get("KEY_PREFIX") if callable(get) else getattr(settings, "KEY_PREFIX", None)
        return cls(prefix or "vp")

    # --- crawl -> workers ----------------------------------------------------------------
    @property
    def stream(self) -> str:
        """The Redis stream the crawl hands videos to and the workers consume."""
        return f"{self.prefix}:videos"

    @property
    def dead(self) -> str:
        """The dead-letter stream: entries that failed ``PROCESSING_MAX_ATTEMPTS`` times."""
        return f"{self.prefix}:videos:dead"

    @property
    def stream_errors(self) -> str:
        """Hash: stream entry id -> the last error of a failed delivery (shown if dead-lettered)."""
        return f"{self.prefix}:videos:errors"

    @property
    def stream_attempts(self) -> str:
        """Hash: stream entry id -> how many of its deliveries failed with a real error (not
        counting deliveries abandoned by a dead worker); ``PROCESSING_MAX_ATTEMPTS`` caps it."""
        return f"{self.prefix}:videos:attempts"

    group: str = STREAM_GROUP

    # --- crawl state -----------------------------------------------------------------------
    @property
    def ledger(self) -> str:
        """Hash: URL -> JSON of its latest state."""
        return f"{self.prefix}:ledger"

    @property
    def ledger_counts(self) -> str:
        """Hash: state -> exact count of URLs in it."""
        return f"{self.prefix}:ledger:counts"

    @property
    def seen(self) -> str:
        """Hash: ``url:<url>`` / ``pid:<platform id>`` claimed for download -> video_id."""
        return f"{self.prefix}:seen"

    @property
    def sha256(self) -> str:
        """Hash: sha256 hex -> the first URL whose bytes had it."""
        return f"{self.prefix}:sha256"

    @property
    def owners(self) -> str:
        """Sorted set: crawl process id -> when its heartbeat lapses (ms); see crawler/queue.py."""
        return f"{self.prefix}:owners"

    def copies(self, video_id: str) -> str:
        """Hash: URL (or path) -> JSON provenance of every other place the video was found:
        byte-identical copies (written by the crawl's dedup) and near-duplicates with their
        copies (written by the workers); merged into the video's document as ``copies``."""
        return f"{self.prefix}:copies:{video_id}"

    @property
    def forgotten(self) -> str:
        """Hash of takedown tombstones (``python -m processing forget``): ``url:<url key>``,
        ``id:<video_id>``, ``domain:<domain>`` -> JSON ``{"at", "video_id", "reason"}``; the
        crawl rejects what they name as ``opted_out: forgotten``."""
        return f"{self.prefix}:forgotten"

    # --- workers ---------------------------------------------------------------------------
    def rate_minute(self, epoch_minute: int | str) -> str:
        """Hash of outcome counts for one minute (``status`` rates)."""
        return f"{self.prefix}:processing:minute:{epoch_minute}"

    @property
    def index_journal(self) -> str:
        """Stream of near-dup candidates (model, id, float16 vectors, quality, duration, phash)
        appended by the shared index before each decision and trimmed once a flush saved them;
        a restarted index actor replays it (processing/runtime/index.py)."""
        return f"{self.prefix}:index:journal"

    @property
    def stage_stats(self) -> str:
        """Hash: ``<stage>:<counter>`` -> total, added by the writer from each batch's stats."""
        return f"{self.prefix}:processing:stages"

    # --- scrapy-redis, per spider (documented names, no prefix) ----------------------------
    @staticmethod
    def start_urls(spider: str) -> str:
        return f"{spider}:start_urls"

    @staticmethod
    def videos_seen(spider: str) -> str:
        """Set of video URLs a spider has yielded and the ledger recorded (kept like the dupefilter)."""
        return f"{spider}:videos_seen"

    @staticmethod
    def videos_pending(spider: str) -> str:
        """Hash: video URL yielded but not yet recorded -> ``pending:<owner>:<expiry ms>:<token>``."""
        return f"{spider}:videos_seen:pending"

    @staticmethod
    def requests(spider: str) -> str:
        """scrapy-redis' request queue (a sorted set; ``SCHEDULER_QUEUE_KEY``)."""
        return f"{spider}:requests"

    @staticmethod
    def leased(source: str) -> str:
        """Sorted set: lease id -> expiry (ms) of what was popped from ``source`` and not yet acked."""
        return f"{source}:leased"

    @staticmethod
    def leased_data(source: str) -> str:
        """Hash: lease id -> what was popped from ``source`` (given back when the lease lapses)."""
        return f"{source}:leased:data"
