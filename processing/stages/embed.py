"""EmbedStage: per-frame embeddings and one L2-normalised video descriptor per video."""

from __future__ import annotations

import numpy as np

from crawler.errors import MediaError
from processing.stages.base import Resources, Stage
from processing.vision import models
from processing.vision.image import to_gray, trim_borders
from processing.work import Work


DEDUP_FEATURES = ("gray", "color")


class EmbedStage(Stage):
    """Embed every sampled frame with the configured model; descriptor = renormalised mean.

    ``model``: ``efficientnet-lite0`` (packaged ImageNet weights; its logits go to
    ``work.logits`` for the imagenet labeler) or ``clip:<folder or hub id>``.
    Letterbox/pillarbox bars are trimmed first so padded copies embed like their original.
    ``work.dedup_embeddings`` (+ ``work.dedup_model``) feed the near-duplicate index.
    With ``dedup_features="color"`` (default) they are the frame embeddings themselves: one
    forward pass per frame. ``"gray"`` also embeds a grayscale copy of every frame in the same
    forward pass (2 model images per frame) for the index. Colour-graded and grayscale copies
    are caught either way: NearDupStage's perceptual-hash layer works on luminance, and on
    bench/dedup.py's set colour embeddings + the hash find every kind of copy (F1 1.0,
    precision 1.0, as with gray) at half the model work.

    The whole batch goes through the model in one forward pass; if that fails, each video is
    embedded alone so that one bad video fails (``embed_error``) without its neighbours.
    """

    name = "embed"
    resources = Resources(num_cpus=1, num_gpus=1)
    error_code = "embed_error"

    def __init__(
        self,
        *,
        model: str,
        precision: str,
        device: str = "auto",
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

    @classmethod
    def from_config(cls, cfg, **overrides) -> EmbedStage:
        return cls(**{"model": cfg.embed_model, "device": cfg.device, "precision": cfg.embed_precision} | overrides)

    def setup(self) -> None:
        if self.embedder is None:
            self.device = models.pick_device(self.device)  # "auto": decided here, where the stage runs
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

    def process_batch(self, works: list[Work]) -> list[Work]:
        self.setup()
        ready = [w for w in works if not w.skip and w.has_frames]
        if ready:
            try:
                with self.stats.timer(len(ready)):
                    self._embed(ready)  # one batched forward over every video of the batch
            except Exception:  # noqa: BLE001 - one bad video must not sink the batch
                ready = []  # the base's loop embeds them one by one below
            else:
                self.stats.count("ok", len(ready))
        done = {id(w) for w in ready}
        super().process_batch([w for w in works if id(w) not in done])
        return works

    def process_one(self, work: Work) -> None:
        if not work.has_frames:
            raise MediaError("no_frames", "nothing to embed")
        self._embed([work])

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
                work.logits = out.logits[offset : offset + n]
            work.dedup_embeddings = out.embeddings[total + offset : total + offset + n] if gray else emb
            work.dedup_model = self.dedup_model_name
            work.item.embedding_model = self.embedder.name
            work.item.models["embedding"] = self.embedder.name
            offset += n
