"""The one defaults module: Scrapy settings and processing config, overridable from the environment.

Scrapy reads this module through ``scrapy.cfg``; the workers (``python -m processing``) read
the same names. Every value that a user may want to change without editing code is taken
from an environment variable of the same name when it is set. Names are grouped by prefix.
Helpers may add settings only inside the section of their part.
"""

import os
from pathlib import Path


def _env(name, default, cast=str):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if cast is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return cast(raw)


# --- project ---------------------------------------------------------------------------
BOT_NAME = "videopipe"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
DATA_DIR = str(Path(_env("DATA_DIR", "data")).resolve())
# Every Redis key the project writes starts with this (scrapy-redis keys excepted: they keep
# their documented names, e.g. ``web:start_urls``, so ``redis-cli lpush`` works as written).
KEY_PREFIX = _env("KEY_PREFIX", "vp")
LOG_LEVEL = _env("LOG_LEVEL", "INFO")

# --- redis: REDIS_URL, or the embedded server under DATA_DIR (crawler/connection.py) -----
# REDIS_URL is read from the environment by crawler.connection.redis_url(); it is not put into
# Scrapy's settings here so that the embedded server is started only when something connects.
REDIS_PARAMS = {"redis_cls": "crawler.connection.ProjectRedis"}
SCHEDULER = "scrapy_redis.scheduler.Scheduler"
DUPEFILTER_CLASS = "scrapy_redis.dupefilter.RFPDupeFilter"
SCHEDULER_PERSIST = True
REDIS_START_URLS_AS_SET = False

# --- crawl -------------------------------------------------------------------------------
ROBOTSTXT_OBEY = _env("ROBOTSTXT_OBEY", True, bool)
USER_AGENT = "videopipe (+https://github.com/videopipe/videopipe)"
CONCURRENT_REQUESTS = _env("CONCURRENT_REQUESTS", 16, int)
CONCURRENT_REQUESTS_PER_DOMAIN = _env("CONCURRENT_REQUESTS_PER_DOMAIN", 8, int)
DOWNLOAD_TIMEOUT = _env("DOWNLOAD_TIMEOUT", 60, int)
RETRY_TIMES = _env("RETRY_TIMES", 2, int)
REQUEST_FINGERPRINTER_IMPLEMENTATION = "2.7"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
FEED_EXPORT_ENCODING = "utf-8"
# Hosts that resolve to private, loopback or link-local addresses are refused unless this is
# set (tests and the demo set it to reach their loopback site).
ALLOW_PRIVATE_NETWORKS = _env("ALLOW_PRIVATE_NETWORKS", False, bool)
# Only these schemes are fetched by the web spiders (local files only by the `local` spider).
CRAWL_ALLOWED_SCHEMES = ["http", "https"]
WEB_DEFAULT_DEPTH = _env("WEB_DEFAULT_DEPTH", 2, int)

# --- downloads and media -------------------------------------------------------------------
FILES_STORE = _env("FILES_STORE", str(Path(DATA_DIR) / "videos"))
MEDIA_MAX_BYTES = _env("MEDIA_MAX_BYTES", 1024 * 1024 * 1024, int)  # abort mid-transfer past this
MEDIA_MAX_DURATION = _env("MEDIA_MAX_DURATION", 4 * 3600, float)  # seconds; longer is rejected
MEDIA_MIN_DURATION = _env("MEDIA_MIN_DURATION", 1.0, float)
MEDIA_MIN_WIDTH = _env("MEDIA_MIN_WIDTH", 64, int)
MEDIA_MIN_HEIGHT = _env("MEDIA_MIN_HEIGHT", 64, int)
MEDIA_ALLOWED_CODECS = []  # empty: every video codec FFmpeg decodes
MEDIA_TIMEOUT = _env("MEDIA_TIMEOUT", 60, float)  # seconds for one probe / phash / yt-dlp step
YTDLP_TIMEOUT = _env("YTDLP_TIMEOUT", 600, float)
YTDLP_FORMAT = _env("YTDLP_FORMAT", "bv*[height<=720]+ba/b[height<=720]/bv*+ba/b")
PHASH_MAX_DISTANCE = _env("PHASH_MAX_DISTANCE", 10, int)  # Hamming bits for "same video"

# --- hand-off to the workers -------------------------------------------------------------
STREAM_KEY = f"{KEY_PREFIX}:videos"  # the Redis stream the workers consume
STREAM_GROUP = "workers"
STREAM_DEAD_KEY = f"{KEY_PREFIX}:videos:dead"
STREAM_MAXLEN = _env("STREAM_MAXLEN", 1_000_000, int)

# --- processing (python -m processing) ---------------------------------------------------
PROCESSING_NUM_WORKERS = _env("PROCESSING_NUM_WORKERS", 0, int)  # 0: one per free core
PROCESSING_BATCH_SIZE = _env("PROCESSING_BATCH_SIZE", 8, int)
PROCESSING_FRAMES_PER_VIDEO = _env("PROCESSING_FRAMES_PER_VIDEO", 8, int)
PROCESSING_MAX_ATTEMPTS = _env("PROCESSING_MAX_ATTEMPTS", 3, int)  # then dead-lettered
PROCESSING_CLAIM_IDLE_MS = _env("PROCESSING_CLAIM_IDLE_MS", 60_000, int)
EMBED_MODEL = _env("EMBED_MODEL", "efficientnet-lite0")
NEARDUP_THRESHOLD = _env("NEARDUP_THRESHOLD", 0.90, float)

# --- catalogue and search ----------------------------------------------------------------
CATALOGUE_PATH = _env("CATALOGUE_PATH", str(Path(DATA_DIR) / "catalogue.sqlite"))
ELASTICSEARCH_URL = _env("ELASTICSEARCH_URL", "")
ELASTICSEARCH_INDEX = _env("ELASTICSEARCH_INDEX", "videos")
KIBANA_URL = _env("KIBANA_URL", "")

# --- item pipelines, in order -----------------------------------------------------------
ITEM_PIPELINES = {
    "pipelines.download.DownloadPipeline": 100,
    "pipelines.dedup.DedupPipeline": 200,
    "pipelines.probe.ProbePipeline": 300,
    "pipelines.phash.PhashPipeline": 400,
    "pipelines.filters.FiltersPipeline": 500,
    "pipelines.handoff.HandoffPipeline": 600,
}
