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
    labelers: tuple[str, ...] = ("imagenet", "ocr", "nsfw", "faces", "speech")
    num_gpus: int = field(default_factory=detect_gpus)
    ray_address: str | None = None

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        if self.num_workers <= 0:
            self.num_workers = max(1, (os.cpu_count() or 1) - 1)
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
