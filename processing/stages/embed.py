"""EmbedStage: per-frame embeddings and one L2-normalised video descriptor per video."""

from __future__ import annotations

import numpy as np

from processing import models
from processing.stages.base import Resources, Stage, Work


def to_gray(frames: np.ndarray) -> np.ndarray:
    """Luma replicated to 3 channels (BT.601), so colour-changed and grayscale copies match."""
    luma = frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114
    return np.repeat(luma.round().astype(np.uint8)[..., None], 3, axis=-1)


def trim_borders(frames: np.ndarray, dark: int = 24, min_keep: float = 0.4) -> np.ndarray:
    """Cut letterbox / pillarbox bars: rows and columns that stay dark on every frame.

    The same box is applied to all frames of a video. If less than ``min_keep`` of a side
    would remain (a dark video), the frames are returned unchanged.
    """
    if frames.ndim != 4 or len(frames) == 0:
        return frames
    bright = frames.max(axis=(0, 3))  # (H, W): brightest value over frames and channels
    rows = np.flatnonzero(bright.max(axis=1) > dark)
    cols = np.flatnonzero(bright.max(axis=0) > dark)
    h, w = bright.shape
    if len(rows) == 0 or len(cols) == 0:
        return frames
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) < min_keep * h or (right - left) < min_keep * w:
        return frames
    if (top, bottom, left, right) == (0, h, 0, w):
        return frames
    return frames[:, top:bottom, left:right]


DEDUP_FEATURES = ("gray", "color")


class EmbedStage(Stage):
    """Embed every sampled frame with the configured model; descriptor = renormalised mean.

    ``model``: ``efficientnet-lite0`` (packaged ImageNet weights; its logits go to
    ``work.extras["logits"]`` for the imagenet labeler) or ``clip:<folder or hub id>``.
    Letterbox/pillarbox bars are trimmed first so padded copies embed like their original.
    ``work.extras["dedup_embeddings"]`` (+ ``["dedup_model"]``) feed the near-duplicate index.
    With ``dedup_features="color"`` (default) they are the frame embeddings themselves: one
    forward pass per frame. ``"gray"`` also embeds a grayscale copy of every frame in the same
    forward pass (2 model images per frame) for the index. Colour-graded and grayscale copies
    are caught either way: NearDupStage's perceptual-hash layer works on luminance, and on
    bench/dedup.py's set colour embeddings + the hash find every kind of copy (F1 1.0,
    precision 1.0, as with gray) at half the model work.
    """

    name = "embed"

    def __init__(
        self,
        *,
        model: str = models.EFFICIENTNET,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        trim_bars: bool = True,
        dedup_features: str = "color",
    ):
        if not isinstance(model, str) or not (
            model == models.EFFICIENTNET or (model.startswith(models.CLIP_PREFIX) and len(model) > 5)
        ):
            raise ValueError(
                f"model must be {models.EFFICIENTNET!r} or 'clip:<path or hub id>', got {model!r}"
            )
        if precision not in models.PRECISIONS:
            raise ValueError(f"precision must be one of {models.PRECISIONS}, got {precision!r}")
        if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if dedup_features not in DEDUP_FEATURES:
            raise ValueError(f"dedup_features must be one of {DEDUP_FEATURES}, got {dedup_features!r}")
        self.dedup_features = dedup_features
        self.model_spec = model
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.threads = threads
        self.trim_bars = trim_bars
        self.embedder: models.ImageEmbedder | None = None
        self.counts: dict[str, int] = {}

    @property
    def resources(self) -> Resources:  # type: ignore[override]
        return Resources(num_cpus=1, num_gpus=1 if self.device.startswith("cuda") else 0)

    @classmethod
    def from_config(cls, cfg) -> EmbedStage:
        return cls(
            model=cfg.embed_model,
            device="cuda" if cfg.num_gpus > 0 else "cpu",
            precision=getattr(cfg, "embed_precision", "auto"),
        )

    def setup(self) -> None:
        if self.embedder is None:
            if not self.device.startswith("cuda"):
                models.set_torch_threads(self.threads)
            self.embedder = models.load_image_embedder(
                self.model_spec, self.device, self.precision, self.batch_size
            )

    @property
    def model_name(self) -> str:
        return self.embedder.name if self.embedder else self.model_spec

    def embed_frames(self, frames: np.ndarray) -> models.Embedded:
        """The bare model call on uint8 RGB frames (N, H, W, 3), for benchmarks."""
        self.setup()
        return self.embedder(frames)

    def _count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def process_batch(self, works: list[Work]) -> list[Work]:
        self.setup()
        todo = [w for w in works if not w.skip]
        ready = []
        for work in todo:
            if work.frames is None or len(work.frames) == 0:
                work.item.fail(self.name, "no_frames", "nothing to embed")
                self._count("no_frames")
            else:
                ready.append(work)
        if not ready:
            return works
        try:
            self._embed(ready)
        except Exception:  # noqa: BLE001 - one bad video must not sink the batch: retry singly
            for work in ready:
                try:
                    self._embed([work])
                except Exception as exc:  # noqa: BLE001
                    work.item.fail(self.name, "embed_error", f"{type(exc).__name__}: {exc}"[:300])
                    self._count("embed_error")
        return works

    @property
    def dedup_model_name(self) -> str:
        return self.model_name + ("+gray" if self.dedup_features == "gray" else "")

    def _embed(self, works: list[Work]) -> None:
        arrays = [trim_borders(w.frames) if self.trim_bars else w.frames for w in works]
        gray = self.dedup_features == "gray"
        # One batched forward over all videos of the batch (and their gray copies).
        out = self.embedder(arrays + [to_gray(a) for a in arrays] if gray else arrays)
        total = sum(len(a) for a in arrays)
        offset = 0
        for work, frames in zip(works, arrays):
            n = len(frames)
            emb = out.embeddings[offset : offset + n]
            work.embeddings = emb
            mean = emb.mean(axis=0)
            work.descriptor = (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)
            if out.logits is not None:
                work.extras["logits"] = out.logits[offset : offset + n]
            work.extras["dedup_embeddings"] = (
                out.embeddings[total + offset : total + offset + n] if gray else emb
            )
            work.extras["dedup_model"] = self.dedup_model_name
            work.item.embedding_model = self.embedder.name
            work.item.models["embedding"] = self.embedder.name
            offset += n
            self._count("ok")
