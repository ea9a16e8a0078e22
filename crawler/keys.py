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

    # --- workers ---------------------------------------------------------------------------
    def rate_minute(self, epoch_minute: int | str) -> str:
        """Hash of outcome counts for one minute (``status`` rates)."""
        return f"{self.prefix}:processing:minute:{epoch_minute}"

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
        """Set of video URLs a spider has already yielded (kept like the dupefilter)."""
        return f"{spider}:videos_seen"
