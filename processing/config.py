"""Worker configuration: one dataclass, defaults from settings, sized to the detected hardware."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import settings


def detect_gpus() -> int:
    """Number of CUDA GPUs visible to torch (0 without torch or without CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - torch missing or broken driver: run on the CPU
        return 0


STAGE_NAMES = ("frames", "embed", "neardup", "labels")  # in the order a batch goes through them
DEFAULT_STAGES = {
    "frames": "processing.stages.frames:FramesStage",
    "embed": "processing.stages.embed:EmbedStage",
    "neardup": "processing.stages.neardup:NearDupStage",
    "labels": "processing.stages.labels:LabelsStage",
}


def parse_stages(spec: str) -> dict[str, str]:
    """DEFAULT_STAGES overridden by ``"name=module:Class,..."`` (PROCESSING_STAGES)."""
    stages = dict(DEFAULT_STAGES)
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, sep, target = part.partition("=")
        if not sep or ":" not in target or name.strip() not in STAGE_NAMES:
            raise ValueError(f"PROCESSING_STAGES: expected name=module:Class with a name in "
                             f"{STAGE_NAMES}, got {part!r}")
        stages[name.strip()] = target.strip()
    return stages


@dataclass
class ProcessingConfig:
    """Everything the worker pool and its stages need; checked in ``__post_init__``."""

    data_dir: Path = field(default_factory=lambda: Path(settings.DATA_DIR))
    stream_key: str = field(default_factory=lambda: settings.STREAM_KEY)
    group: str = field(default_factory=lambda: settings.STREAM_GROUP)
    dead_key: str = field(default_factory=lambda: settings.STREAM_DEAD_KEY)
    max_attempts: int = field(default_factory=lambda: settings.PROCESSING_MAX_ATTEMPTS)
    claim_idle_ms: int = field(default_factory=lambda: settings.PROCESSING_CLAIM_IDLE_MS)
    num_workers: int = field(default_factory=lambda: settings.PROCESSING_NUM_WORKERS)
    batch_size: int = field(default_factory=lambda: settings.PROCESSING_BATCH_SIZE)
    frames_per_video: int = field(default_factory=lambda: settings.PROCESSING_FRAMES_PER_VIDEO)
    embed_model: str = field(default_factory=lambda: settings.EMBED_MODEL)
    neardup_threshold: float = field(default_factory=lambda: settings.NEARDUP_THRESHOLD)
    labelers: tuple[str, ...] = field(
        default_factory=lambda: tuple(n.strip() for n in settings.LABELERS.split(",") if n.strip())
    )
    # stages (processing/stages/*.py)
    neardup_min_match: float = field(default_factory=lambda: settings.NEARDUP_MIN_MATCH)
    neardup_approx_threshold: int = field(default_factory=lambda: settings.NEARDUP_APPROX_THRESHOLD)
    embed_precision: str = field(default_factory=lambda: settings.EMBED_PRECISION)
    clip_model: str = field(default_factory=lambda: settings.CLIP_MODEL)
    clip_tags_vocabulary: tuple[str, ...] = field(
        default_factory=lambda: tuple(v.strip() for v in settings.CLIP_TAGS_VOCABULARY.split(",") if v.strip())
    )
    caption_model: str = field(default_factory=lambda: settings.CAPTION_MODEL)
    asr_model: str = field(default_factory=lambda: settings.ASR_MODEL)
    num_gpus: int = field(default_factory=detect_gpus)
    ray_address: str | None = None
    # runtime (processing/runner.py)
    model_workers: int = 0  # model actors (embed + labels); 0: one per GPU, or 1 on the CPU
    max_inflight: int = 0  # batches between stream and catalogue; 0: 2 per actor
    block_ms: int = 1000  # XREADGROUP BLOCK when idle (also how often a stop is noticed)
    ray_logs: bool = False  # forward actors' stdout/stderr to the driver (else Ray's log dir)
    # stage name -> "module:Class" (a Stage with a `from_config(cfg)` classmethod)
    stages: dict[str, str] = field(default_factory=lambda: parse_stages(settings.PROCESSING_STAGES))

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        if self.num_workers <= 0:
            self.num_workers = max(1, (os.cpu_count() or 1) - 1)
        if self.model_workers <= 0:
            self.model_workers = max(1, self.num_gpus)
        if self.max_inflight <= 0:
            self.max_inflight = 2 * (self.num_workers + self.model_workers)
        missing = [s for s in STAGE_NAMES if not self.stages.get(s)]
        if missing:
            raise ValueError(f"stages must name a class for {missing}, got {self.stages!r}")
        for name in ("batch_size", "frames_per_video", "max_attempts", "claim_idle_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.neardup_threshold <= 1.0:
            raise ValueError(f"neardup_threshold must be in (0, 1], got {self.neardup_threshold!r}")

    @property
    def index_dir(self) -> Path:
        """Where the near-duplicate faiss indexes live (one per embedding model)."""
        return self.data_dir / "index"

    @property
    def thumbnail_dir(self) -> Path:
        return self.data_dir / "thumbnails"
