"""The one defaults module: Scrapy settings and processing config, overridable from the environment.

Scrapy reads this module through ``scrapy.cfg``; the workers (``python -m processing``) read
the same names. Every value that a user may want to change without editing code is taken
from an environment variable of the same name when it is set. Names are grouped by prefix.
Helpers may add settings only inside the section of their part.
"""

import os
import re
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
# The names themselves are built in one place: crawler/keys.py (RedisKeys).
KEY_PREFIX = _env("KEY_PREFIX", "vp")
LOG_LEVEL = _env("LOG_LEVEL", "INFO")

# --- redis: REDIS_URL, or the embedded server under DATA_DIR (crawler/connection.py) -----
# REDIS_URL is read from the environment by crawler.connection.redis_url(); it is not put into
# Scrapy's settings here so that the embedded server is started only when something connects.
REDIS_PARAMS = {"redis_cls": "crawler.connection.ProjectRedis"}
# scrapy-redis' keys and queue, but a popped request is leased, not lost (crawler/queue.py).
SCHEDULER = "crawler.queue.LeasingScheduler"
SCHEDULER_QUEUE_CLASS = "crawler.queue.LeasedQueue"
DUPEFILTER_CLASS = "scrapy_redis.dupefilter.RFPDupeFilter"
SCHEDULER_PERSIST = True
REDIS_START_URLS_AS_SET = False
# A popped request (or start payload) is leased for this many seconds, renewed by its process's
# heartbeat; once a process stops beating (killed), any live spider gives its leases back.
CRAWL_LEASE_SECONDS = _env("CRAWL_LEASE_SECONDS", 60.0, float)
# A video claimed as seen / for download stays claimed this long at most while its item is in
# flight (sooner free again when its process stops beating); recorded in the ledger, it is final.
CRAWL_CLAIM_SECONDS = _env("CRAWL_CLAIM_SECONDS", 3600.0, float)
# A request whose items could not all be recorded is handed back, tried this many times in all.
CRAWL_MAX_ATTEMPTS = _env("CRAWL_MAX_ATTEMPTS", 3, int)
# Outages: every client retries with exponential back-off (capped at REDIS_RETRY_BACKOFF_MAX s)
# for up to REDIS_RETRY_SECONDS (0: for ever), pausing its caller, with one log line at the start
# and one at the end; the embedded server is restarted on its recorded port.
REDIS_RETRY_SECONDS = _env("REDIS_RETRY_SECONDS", 300.0, float)
REDIS_RETRY_BACKOFF_MAX = _env("REDIS_RETRY_BACKOFF_MAX", 2.0, float)
REDIS_HEALTH_CHECK_INTERVAL = _env("REDIS_HEALTH_CHECK_INTERVAL", 10, int)  # s idle before a PING
# The embedded server's append-only-file fsync policy; what a machine crash (power loss, kernel
# panic) can lose: "always": nothing acknowledged (slowest); "everysec": about the last second of
# writes; "no": whatever the OS had not flushed yet (up to ~30 s on Linux). A killed server
# process (kill -9) with the machine up loses nothing acknowledged: writes reach the OS before
# the reply (under "everysec" a disk too slow to fsync can hold them back for up to 2 s).
REDIS_APPENDFSYNC = _env("REDIS_APPENDFSYNC", "everysec")
# The embedded server stops itself after this many seconds with no client (0: never) and at once
# when its folder is deleted; the next client starts it again (same port, same data).
EMBEDDED_REDIS_IDLE_EXIT = _env("EMBEDDED_REDIS_IDLE_EXIT", 900.0, float)

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
# JSON feeds keep file names that are not UTF-8 (surrogateescape): written as JSON escapes.
FEED_EXPORTERS = {"json": "crawler.exporters.JsonItemExporter", "jsonlines": "crawler.exporters.JsonLinesItemExporter",
                  "jsonl": "crawler.exporters.JsonLinesItemExporter", "jl": "crawler.exporters.JsonLinesItemExporter"}  # fmt: skip
# Hosts that resolve to private, loopback or link-local addresses are refused unless allowed
# here: true/1 (all), or a comma-separated list of host[:port] / CIDR entries, e.g.
# "127.0.0.1:8765" (only the test site). Read by crawler.netguard.NetPolicy.
ALLOW_PRIVATE_NETWORKS = _env("ALLOW_PRIVATE_NETWORKS", False)
NETGUARD_DNS_TTL = _env("NETGUARD_DNS_TTL", 60.0, float)  # seconds a checked DNS answer is reused
# Every connection goes to an address netguard checked (crawler/middlewares.py explains why).
TWISTED_DNS_RESOLVER = "crawler.middlewares.GuardedResolver"
# Only these schemes are fetched by the web spiders (local files only by the `local` spider).
CRAWL_ALLOWED_SCHEMES = ["http", "https"]
WEB_DEFAULT_DEPTH = _env("WEB_DEFAULT_DEPTH", 2, int)
# A spider started with -a url=/-a path= closes after this many idle seconds (scrapy-redis
# MAX_IDLE_TIME_BEFORE_CLOSE, when set, wins); with no argument it waits on Redis for starts.
SPIDER_IDLE_CLOSE_SECONDS = _env("SPIDER_IDLE_CLOSE_SECONDS", 3, int)
YTDLP_RESOLVE_TIMEOUT = _env("YTDLP_RESOLVE_TIMEOUT", 120, float)  # one yt-dlp metadata lookup
YTDLP_MAX_ENTRIES = _env("YTDLP_MAX_ENTRIES", 0, int)  # cap on entries per playlist; 0: all
WEB_PAGE_MAX_BYTES = _env("WEB_PAGE_MAX_BYTES", 20 * 1024 * 1024, int)  # a bigger "page" is dropped
DOWNLOADER_MIDDLEWARES = {"crawler.optout.OptOutMiddleware": 40, "crawler.middlewares.NetguardMiddleware": 50}
# Opt-out list (crawler/optout.py): a file of domains and URLs, one a line, `#` comments. Every
# spider rejects the videos it names (`opted_out: optout_list`) and no request reaches them.
OPTOUT_PATH = _env("OPTOUT_PATH", "")
# Sources (crawler/spiders/): the archives' API base URLs (tests point them at the local site).
ARCHIVE_ORG_URL = _env("ARCHIVE_ORG_URL", "https://archive.org")
ARCHIVE_ORG_ROWS = _env("ARCHIVE_ORG_ROWS", 100, int)  # identifiers per advanced-search page
COMMONS_API_URL = _env("COMMONS_API_URL", "https://commons.wikimedia.org/w/api.php")
COMMONS_LIMIT = _env("COMMONS_LIMIT", 50, int)  # files per API page (the API allows up to 50)
# archive.org/download/<id>/<file> answers 302 to a storage node: media downloads follow redirects
# (each hop passes netguard and the opt-out list again).
MEDIA_ALLOW_REDIRECTS = True
# URL lists (`scrapy crawl urls -a path=...`): rows per Redis payload, and how many payloads may
# wait in `urls:start_urls` before the reading process pauses (bounds Redis and process memory).
URLS_CHUNK_ROWS = _env("URLS_CHUNK_ROWS", 500, int)
URLS_MAX_PENDING_CHUNKS = _env("URLS_MAX_PENDING_CHUNKS", 64, int)
WEB_SITEMAP_MAX_BYTES = _env("WEB_SITEMAP_MAX_BYTES", 50 * 1024 * 1024, int)  # the protocol's cap
# Prometheus endpoint of a spider process (crawler/metrics.py): off while METRICS_PORT is 0.
# METRICS_HOST is the bind address (0.0.0.0 in a container); `work --metrics-host` defaults to it.
METRICS_PORT = _env("METRICS_PORT", 0, int)
METRICS_HOST = _env("METRICS_HOST", "127.0.0.1")
EXTENSIONS = {"crawler.metrics.MetricsExtension": 500}

# --- downloads and media -------------------------------------------------------------------
FILES_STORE = _env("FILES_STORE", str(Path(DATA_DIR) / "videos"))
MEDIA_MAX_BYTES = _env("MEDIA_MAX_BYTES", 1024 * 1024 * 1024, int)  # abort mid-transfer past this
# Direct downloads stream to disk (pipelines/fetch.py): this many at once (and at most
# CONCURRENT_REQUESTS_PER_DOMAIN per host), each holding one 64 KiB read in memory.
MEDIA_CONCURRENT_DOWNLOADS = _env("MEDIA_CONCURRENT_DOWNLOADS", 16, int)
MEDIA_MAX_REDIRECTS = _env("MEDIA_MAX_REDIRECTS", 10, int)  # hops, each checked by netguard again
# Frames above this many pixels are refused before any decode (a 16000x16000 frame is ~1 GB as RGB).
MEDIA_MAX_PIXELS = _env("MEDIA_MAX_PIXELS", 7680 * 4320, int)  # 8K UHD
MEDIA_MAX_DURATION = _env("MEDIA_MAX_DURATION", 4 * 3600, float)  # seconds; longer is rejected
MEDIA_MIN_DURATION = _env("MEDIA_MIN_DURATION", 1.0, float)
MEDIA_MIN_WIDTH = _env("MEDIA_MIN_WIDTH", 64, int)
MEDIA_MIN_HEIGHT = _env("MEDIA_MIN_HEIGHT", 64, int)
MEDIA_ALLOWED_CODECS = []  # empty: every video codec FFmpeg decodes
MEDIA_TIMEOUT = _env("MEDIA_TIMEOUT", 60, float)  # seconds for one probe / phash / yt-dlp step
# Worker processes of a crawl for probe / phash / sha256 (pipelines/pool.py): default one per core,
# all started when the spider opens; 0 runs them in the crawl process's threads instead (one core's
# worth of GIL).
MEDIA_PROCESSES = _env("MEDIA_PROCESSES", os.cpu_count() or 1, int)
YTDLP_TIMEOUT = _env("YTDLP_TIMEOUT", 600, float)
YTDLP_FORMAT = _env("YTDLP_FORMAT", "bv*[height<=720]+ba/b[height<=720]/bv*+ba/b")
PHASH_MAX_DISTANCE = _env("PHASH_MAX_DISTANCE", 10, int)  # Hamming bits for "same video"

# --- hand-off to the workers -------------------------------------------------------------
# The stream, its consumer group and dead-letter stream are named by crawler.keys.RedisKeys
# from KEY_PREFIX where they are used (never here), so `-s KEY_PREFIX=x` moves them too.
STREAM_MAXLEN = _env("STREAM_MAXLEN", 1_000_000, int)

# --- processing (python -m processing) ---------------------------------------------------
PROCESSING_NUM_WORKERS = _env("PROCESSING_NUM_WORKERS", 0, int)  # 0: one per free core
PROCESSING_BATCH_SIZE = _env("PROCESSING_BATCH_SIZE", 8, int)
PROCESSING_FRAMES_PER_VIDEO = _env("PROCESSING_FRAMES_PER_VIDEO", 8, int)
PROCESSING_MAX_ATTEMPTS = _env("PROCESSING_MAX_ATTEMPTS", 3, int)  # then dead-lettered
PROCESSING_CLAIM_IDLE_MS = _env("PROCESSING_CLAIM_IDLE_MS", 60_000, int)
# Deadline of every per-video step on the decode and model actors (decode, model calls,
# labelers), in seconds per video of the batch (0: none). A step past it is abandoned: its
# actor is killed and restarted, the batch's videos run the step again one by one, and a video
# that overruns alone is recorded `failed` with code `timeout` at that stage.
PROCESSING_STEP_TIMEOUT = _env("PROCESSING_STEP_TIMEOUT", 120.0, float)
# The workers' decode (processing/stages/frames.py) refuses frames above MEDIA_MAX_PIXELS too,
# from the stream's width x height before decoding, with code `too_large`.
# Replace stage classes: "frames=my.module:MyFrames,labels=..." (names: frames, scenes, embed, neardup, labels)
PROCESSING_STAGES = _env("PROCESSING_STAGES", "")
EMBED_MODEL = _env("EMBED_MODEL", "efficientnet-lite0")
# Near-dup: cosine a sampled frame needs with a kept video's frame to vote for it (measured on
# EfficientNet-Lite0 frame embeddings: copies >= 0.80 (grayscale copies ~0.81 in colour),
# different clips <= 0.41), and the share of a new video's frames that must vote for one kept
# video. Heavier copies are caught by the perceptual hash (PHASH_MAX_DISTANCE) in the same stage.
NEARDUP_THRESHOLD = _env("NEARDUP_THRESHOLD", 0.80, float)
NEARDUP_MIN_MATCH = _env("NEARDUP_MIN_MATCH", 0.5, float)
NEARDUP_APPROX_THRESHOLD = _env("NEARDUP_APPROX_THRESHOLD", 200_000, int)  # vectors; then IVF over the codes
# What the near-dup index keeps of a frame (processing/vision/codecs.py, docs/capacity.md): "random"
# (a fixed random rotation to NEARDUP_CODE_DIM dims, 8 bits each: no training), "pca" (fit on the
# first NEARDUP_CODEC_TRAIN vectors) or "flat" (float32). NEARDUP_EXACT keeps the full vectors on
# disk (float16) so that decisions are exact; the codes only propose candidates.
NEARDUP_CODEC = _env("NEARDUP_CODEC", "random")
NEARDUP_CODE_DIM = _env("NEARDUP_CODE_DIM", 96, int)
NEARDUP_CODEC_TRAIN = _env("NEARDUP_CODEC_TRAIN", 50_000, int)
NEARDUP_NPROBE = _env("NEARDUP_NPROBE", 32, int)  # IVF lists searched per frame
NEARDUP_EXACT = _env("NEARDUP_EXACT", True, bool)
# The shared near-dup index (processing/runtime/index.py): NEARDUP_INDEX_SHARDS actors hold the
# frame codes (a video in shard blake2b(id) % n; 1: the codes stay in the decider), one decider
# holds the clusters; each snapshots to NEARDUP_INDEX_URI (a folder, or s3:// / gs://; empty:
# DATA_DIR/index) and every decision is journalled to Redis first (<prefix>:index:journal), so an
# index actor restarted on another node recovers everything. Keep the shard count of an index.
NEARDUP_INDEX_SHARDS = _env("NEARDUP_INDEX_SHARDS", 1, int)
NEARDUP_INDEX_URI = _env("NEARDUP_INDEX_URI", "")
# Where the frames stage writes each video's JPEG thumbnail: a folder, or a bucket prefix (s3://,
# gs://) that a search page on another machine reads (empty: DATA_DIR/thumbnails of each worker).
THUMBNAILS_URI = _env("THUMBNAILS_URI", "")
# Placement on a Ray cluster: the name of a custom resource (`ray start --resources='{"decode": 8}'`)
# that decode actors / model actors / index actors ask a small share of, so they run only on the
# nodes that offer it (empty: anywhere Ray likes; model actors still go where the GPUs are).
DECODE_RESOURCE = _env("DECODE_RESOURCE", "")
MODEL_RESOURCE = _env("MODEL_RESOURCE", "")
INDEX_RESOURCE = _env("INDEX_RESOURCE", "")
# Which layers decide a near-duplicate (`work --dedup-method`): "both" (the hash proposes, the frames
# confirm; else the frames), "phash" (the hash alone, within PHASH_MAX_DISTANCE bits) or
# "embedding" (frames alone, NEARDUP_THRESHOLD). `--phash-threshold` / `--embedding-threshold` set those.
DEDUP_METHOD = _env("DEDUP_METHOD", "both")
# Labelers (comma-separated; defaults run offline on packaged models) and opt-in models.
# An empty value (``LABELERS=``) runs no labeler; unset runs the defaults.
LABELERS = os.environ.get("LABELERS", "imagenet,ocr,nsfw,faces,speech")
CLIP_MODEL = _env("CLIP_MODEL", "")  # local folder or hub id: clip_tags labeler
CLIP_TAGS_VOCABULARY = _env("CLIP_TAGS_VOCABULARY", "")  # comma-separated; empty: built-in list
CAPTION_MODEL = _env("CAPTION_MODEL", "")  # BLIP: caption labeler
ASR_MODEL = _env("ASR_MODEL", "")  # Whisper: transcript labeler
EMBED_PRECISION = _env("EMBED_PRECISION", "auto")  # auto | fp32 | bf16 | fp16
# Scenes (processing/stages/scenes.py): a cut where FFmpeg's scene score (0..1) passes this;
# scenes shorter than SCENES_MIN_SECONDS are merged into the one before.
SCENES_THRESHOLD = _env("SCENES_THRESHOLD", 0.3, float)
SCENES_MIN_SECONDS = _env("SCENES_MIN_SECONDS", 0.5, float)

# --- catalogue and search ----------------------------------------------------------------
CATALOGUE_PATH = _env("CATALOGUE_PATH", str(Path(DATA_DIR) / "catalogue.sqlite"))
ELASTICSEARCH_URL = _env("ELASTICSEARCH_URL", "")
ELASTICSEARCH_INDEX = _env("ELASTICSEARCH_INDEX", "videos")
KIBANA_URL = _env("KIBANA_URL", "")
# Credentials: an API key, or basic auth (both from the environment only).
ELASTICSEARCH_API_KEY = _env("ELASTICSEARCH_API_KEY", "")
ELASTICSEARCH_USERNAME = _env("ELASTICSEARCH_USERNAME", "")
ELASTICSEARCH_PASSWORD = _env("ELASTICSEARCH_PASSWORD", "")
ELASTICSEARCH_CA_CERTS = _env("ELASTICSEARCH_CA_CERTS", "")
KIBANA_API_KEY = _env("KIBANA_API_KEY", "")  # else the Elasticsearch credentials are used
ELASTICSEARCH_BULK_CHUNK = _env("ELASTICSEARCH_BULK_CHUNK", 500, int)
ELASTICSEARCH_MAX_RETRIES = _env("ELASTICSEARCH_MAX_RETRIES", 5, int)  # on 429/5xx, with back-off
ELASTICSEARCH_BACKOFF = _env("ELASTICSEARCH_BACKOFF", 1.0, float)  # seconds, doubled per retry
# Search (both backends): text model for semantic search, and how it blends with BM25.
SEARCH_TEXT_MODEL = _env("SEARCH_TEXT_MODEL", "all-MiniLM-L6-v2")  # or a local model directory
SEARCH_SEMANTIC = _env("SEARCH_SEMANTIC", True, bool)
SEARCH_BM25_WEIGHT = _env("SEARCH_BM25_WEIGHT", 0.5, float)  # 1.0: BM25 only, 0.0: semantic only
SEARCH_SEMANTIC_MIN = _env("SEARCH_SEMANTIC_MIN", 0.3, float)  # cosine a semantic-only hit needs
SEARCH_SEMANTIC_K = _env("SEARCH_SEMANTIC_K", 200, int)
SEARCH_FACET_SIZE = _env("SEARCH_FACET_SIZE", 20, int)
SEARCH_EMBED_PER_QUERY = _env("SEARCH_EMBED_PER_QUERY", 256, int)  # `serve`: the rest in background
SEARCH_DEVICE = _env("SEARCH_DEVICE", "")  # torch device for the text model; empty: its own choice
# A CLIP model (sentence-transformers name or path) whose descriptors are in the catalogue:
# enables text-to-video search over them. Empty: off.
SEARCH_CLIP_MODEL = _env("SEARCH_CLIP_MODEL", "")
# The search page serves a video only from the path its document records, only from under
# FILES_STORE or these folders (os.pathsep-separated; add the folders of `local` crawls; bucket
# prefixes s3://... / gs://... too), and only while it is still the indexed file (its sha256);
# thumbnails also from DATA_DIR/thumbnails and THUMBNAILS_URI.
SEARCH_MEDIA_ROOTS = [p for p in re.split(re.escape(os.pathsep) + "(?!//)", _env("SEARCH_MEDIA_ROOTS", "")) if p]
# `serve`: a token every request must carry (needed to bind anything but loopback), the cap on
# open connections (more are answered 503), seconds a client has to send its request, and
# seconds any one read or write of a connection may stall.
SEARCH_TOKEN = _env("SEARCH_TOKEN", "")
SEARCH_MAX_CONNECTIONS = _env("SEARCH_MAX_CONNECTIONS", 64, int)
SEARCH_REQUEST_TIMEOUT = _env("SEARCH_REQUEST_TIMEOUT", 10.0, float)
SEARCH_SOCKET_TIMEOUT = _env("SEARCH_SOCKET_TIMEOUT", 30.0, float)

# --- item pipelines, in order -----------------------------------------------------------
ITEM_PIPELINES = {
    "pipelines.takedowns.TakedownPipeline": 50,  # `forget` tombstones: refused before any download
    "pipelines.download.DownloadPipeline": 100,
    "pipelines.dedup.DedupPipeline": 200,
    "pipelines.probe.ProbePipeline": 300,
    "pipelines.phash.PhashPipeline": 400,
    "pipelines.filters.FiltersPipeline": 500,
    "pipelines.handoff.HandoffPipeline": 600,
}
