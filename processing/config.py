"""Worker configuration: one dataclass, read from settings once (``from_settings``), sized to the hardware.

``ProcessingConfig.from_settings()`` is the only place the workers read ``settings``: the
defaults live there alone (settings/__init__.py), and stages get explicit values from this
config in their ``from_config``. Fields with a default here are command-line options that
have no setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from crawler import locations
from crawler.keys import RedisKeys
from processing.pipeline import STEP_NAMES, stage_targets
from processing.vision.frame_index import IndexOptions


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@dataclass
class ProcessingConfig:
    """Everything the worker pool and its stages need; checked in ``__post_init__``."""

    data_dir: Path
    key_prefix: str  # every Redis key (stream, ledger, rates, stage stats) is under it
    # stream (processing/runtime/stream.py)
    max_attempts: int
    claim_idle_ms: int
    stream_maxlen: int
    step_timeout: float  # s per video of a batch, decode/model steps (runner.py); 0: none
    # pools (processing/runtime/pools.py)
    num_workers: int  # decode actors; 0: one per free core
    batch_size: int
    num_gpus: int | None  # GPUs of the run; None: the Ray cluster's, counted once Ray is up (with_cluster_gpus)
    # stages (processing/stages/*.py)
    frames_per_video: int
    max_pixels: int  # frames above it are refused before decoding (frames.py)
    embed_model: str
    embed_precision: str
    neardup_threshold: float
    neardup_min_match: float
    neardup_approx_threshold: int
    phash_max_distance: int
    dedup_method: str  # "both", "phash" or "embedding" (processing/stages/neardup.py)
    neardup_index: IndexOptions  # how the near-dup index stores vectors (processing/vision/frame_index.py)
    index_shards: int  # frame-code shard actors of the shared index (processing/runtime/index.py)
    index_uri: str  # where the index snapshots go: a folder or s3:// / gs:// ("" : data_dir/index)
    thumbnails_uri: str  # where thumbnails go: a folder or s3:// / gs:// ("" : data_dir/thumbnails)
    # placement: custom Ray resources the decode / model / index actors ask for ("" : none)
    decode_resource: str
    model_resource: str
    index_resource: str
    labelers: tuple[str, ...]
    clip_model: str
    clip_tags_vocabulary: tuple[str, ...]
    caption_model: str
    asr_model: str
    scenes_threshold: float
    scenes_min_seconds: float
    stages: dict[str, str]  # step name -> "module:Class" (processing/pipeline.py)
    # runtime options of `python -m processing work` (no setting)
    model_workers: int = 0  # model actors (embed + labels); 0: one per GPU, or 1 on the CPU
    max_inflight: int = 0  # batches between stream and catalogue; 0: 2 per actor
    block_ms: int = 1000  # XREADGROUP BLOCK when idle (also how often a stop is noticed)
    ray_address: str | None = None
    ray_logs: bool = False  # forward actors' stdout/stderr to the driver (else Ray's log dir)
    ray_dashboard: bool = False  # Ray's dashboard (:8265) on the local Ray this driver starts
    metrics_port: int = 0  # Prometheus endpoint of the driver (processing/runtime/metrics.py); 0: off
    metrics_host: str = "127.0.0.1"  # its bind address (setting METRICS_HOST)

    @classmethod
    def from_settings(cls, source=None, **overrides) -> ProcessingConfig:
        """The config from the ``settings`` module (or ``source``), ``overrides`` replacing fields.

        ``num_gpus`` not given: None, counted on the Ray cluster once the driver has joined it
        (``with_cluster_gpus``), not on the driver's machine (a CPU-only head would put every model
        on the CPU); nor is torch imported here.
        """
        if source is None:
            import settings as source
        values = dict(
            data_dir=source.DATA_DIR,
            key_prefix=source.KEY_PREFIX,
            max_attempts=source.PROCESSING_MAX_ATTEMPTS,
            claim_idle_ms=source.PROCESSING_CLAIM_IDLE_MS,
            stream_maxlen=source.STREAM_MAXLEN,
            step_timeout=source.PROCESSING_STEP_TIMEOUT,
            num_workers=source.PROCESSING_NUM_WORKERS,
            batch_size=source.PROCESSING_BATCH_SIZE,
            num_gpus=None,  # the Ray cluster's, counted once the driver has joined it
            frames_per_video=source.PROCESSING_FRAMES_PER_VIDEO,
            max_pixels=source.MEDIA_MAX_PIXELS,
            embed_model=source.EMBED_MODEL,
            embed_precision=source.EMBED_PRECISION,
            neardup_threshold=source.NEARDUP_THRESHOLD,
            neardup_min_match=source.NEARDUP_MIN_MATCH,
            neardup_approx_threshold=source.NEARDUP_APPROX_THRESHOLD,
            phash_max_distance=source.PHASH_MAX_DISTANCE,
            dedup_method=getattr(source, "DEDUP_METHOD", "both"),
            neardup_index=IndexOptions(
                codec=getattr(source, "NEARDUP_CODEC", "random"), code_dim=getattr(source, "NEARDUP_CODE_DIM", 96),
                train_size=getattr(source, "NEARDUP_CODEC_TRAIN", 50_000), nprobe=getattr(source, "NEARDUP_NPROBE", 32),
                exact=getattr(source, "NEARDUP_EXACT", True)),  # fmt: skip
            index_shards=source.NEARDUP_INDEX_SHARDS,
            index_uri=source.NEARDUP_INDEX_URI,
            thumbnails_uri=getattr(source, "THUMBNAILS_URI", ""),
            decode_resource=source.DECODE_RESOURCE,
            model_resource=source.MODEL_RESOURCE,
            index_resource=source.INDEX_RESOURCE,
            labelers=_names(source.LABELERS),
            clip_model=source.CLIP_MODEL,
            clip_tags_vocabulary=_names(source.CLIP_TAGS_VOCABULARY),
            caption_model=source.CAPTION_MODEL,
            asr_model=source.ASR_MODEL,
            scenes_threshold=source.SCENES_THRESHOLD,
            scenes_min_seconds=source.SCENES_MIN_SECONDS,
            stages=stage_targets(source.PROCESSING_STAGES),
            metrics_host=source.METRICS_HOST,
        )
        values.update(overrides)
        return cls(**values)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        RedisKeys(self.key_prefix)  # raises ValueError on a prefix that cannot be a key prefix
        if self.num_workers <= 0:
            self.num_workers = max(1, (os.cpu_count() or 1) - 1)
        if self.num_gpus is not None and (not isinstance(self.num_gpus, int) or self.num_gpus < 0):
            raise ValueError(f"num_gpus must be an integer >= 0 (None: the Ray cluster's), got {self.num_gpus!r}")
        if self.model_workers <= 0 and self.num_gpus is not None:  # else sized once the GPUs are counted
            self.model_workers = max(1, self.num_gpus)
        if self.max_inflight <= 0 and self.model_workers > 0:
            self.max_inflight = 2 * (self.num_workers + self.model_workers)
        missing = [s for s in STEP_NAMES if not self.stages.get(s)]
        if missing:
            raise ValueError(f"stages must name a class for {missing}, got {self.stages!r}")
        if not isinstance(self.step_timeout, (int, float)) or self.step_timeout < 0:
            raise ValueError(f"step_timeout must be >= 0 seconds (0: none), got {self.step_timeout!r}")
        for name in ("batch_size", "frames_per_video", "max_attempts", "claim_idle_ms", "stream_maxlen",
                     "max_pixels", "index_shards"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        thumbs = self.thumbnails_uri
        if thumbs and not locations.is_remote(thumbs) and locations.local_file(thumbs) is None:
            raise ValueError(f"THUMBNAILS_URI must be a folder, file://, s3:// or gs://, got {self.thumbnails_uri!r}")
        if not 0.0 < self.neardup_threshold <= 1.0:
            raise ValueError(f"neardup_threshold must be in (0, 1], got {self.neardup_threshold!r}")
        if self.dedup_method not in ("both", "phash", "embedding"):
            raise ValueError(f"dedup method must be phash, embedding or both, got {self.dedup_method!r}")
        if not isinstance(self.phash_max_distance, int) or not -1 <= self.phash_max_distance <= 64:
            raise ValueError(f"phash threshold must be a number of bits in 0..64 (-1: off), got {self.phash_max_distance!r}")

    @property
    def keys(self) -> RedisKeys:
        """Every Redis key name under ``key_prefix``."""
        return RedisKeys(self.key_prefix)

    def with_cluster_gpus(self, gpus: float) -> ProcessingConfig:
        """This config with ``num_gpus`` counted on the Ray cluster (``ray.cluster_resources()["GPU"]``)
        when it was not given (an explicit ``--num-gpus`` wins); the model actors and batches in
        flight left to their defaults are sized by it."""
        if self.num_gpus is not None:
            return self
        return replace(self, num_gpus=int(gpus))

    @property
    def device(self) -> str:
        """Where the model stages run: ``cpu`` on a run without GPUs, else ``auto``: decided in the
        model actor, where it runs (cuda when torch sees one there, else cpu; pools.StageHost)."""
        return "cpu" if self.num_gpus == 0 else "auto"

    @property
    def index_dir(self) -> Path:
        """Where the near-duplicate faiss indexes live (one per embedding model)."""
        return self.data_dir / "index"

    @property
    def thumbnail_dir(self) -> Path | str:
        """Where thumbnails go: THUMBNAILS_URI (a folder, or an s3:// / gs:// prefix kept as the URI),
        else ``data_dir/thumbnails``."""
        uri = self.thumbnails_uri
        if not uri:
            return self.data_dir / "thumbnails"
        return uri.rstrip("/") if locations.is_remote(uri) else locations.local_file(uri)
