"""FrameCodec: what the near-dup index keeps of a frame vector in memory (fewer dims, 8 bits each).

Three kinds, picked by ``NEARDUP_CODEC``:

- ``random`` (default): a fixed random orthogonal projection to ``code_dim`` dims (seeded:
  nothing to train, codes from the first vector, the same for any content), the projected
  vector renormalised, then 8 bits a dimension over a fixed range.
- ``pca``: the top ``code_dim`` principal directions of the first ``train_size`` vectors the
  index stored (uncentred, so inner products stay cosines), then an 8-bit quantiser per
  dimension trained on them. Until it is fit the index keeps the full float vectors.
- ``flat``: the full float32 vectors, nothing lost (4 bytes a dimension).

Measured on real frame embeddings (``bench/index.py --real``: efficientnet-lite0 frames of the
dedup set, best-frame similarity of every pair of videos between 0.7 and 0.9): random 96-d
codes move it by +0.008 +- 0.026 (p99 0.087); a PCA fit on the other clips keeps only 30-46%
of a new clip's energy and moves it by about -0.5. A PCA is as good as the content it was fit
on, and a crawl's first videos are no sample of its later ones; the random rotation is blind
to content. Either way the codes only propose candidates: the decision reads the exact
vectors (processing/vision/exact_store.py), and ``FrameIndex.code_margin`` says how far below
the exact similarity a code similarity may fall.

The codec only projects; the faiss index holds the quantiser (``flat_index``), and an IVF
index built from it (``ivf_index``) shares its codes.
"""

from __future__ import annotations

import numpy as np

KINDS = ("flat", "pca", "random")
BITS = {8: "QT_8bit", 6: "QT_6bit", 4: "QT_4bit"}
RANDOM_SIGMAS = 5.0  # the fixed range of the random codec: +-5 sigma of a coordinate (1/sqrt(dims))


def random_orthogonal(dim: int, out: int, seed: int) -> np.ndarray:
    """(dim, out) matrix with orthonormal columns, the same for the same seed."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, out)))
    return np.ascontiguousarray(q * np.sign(np.diag(r)), dtype=np.float32)


class FrameCodec:
    """Projection (``dim`` -> ``out_dim``) and the faiss index types that quantise its output."""

    def __init__(self, kind: str, dim: int, code_dim: int = 128, bits: int = 8, seed: int = 0):
        if kind not in KINDS:
            raise ValueError(f"codec must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(code_dim, int) or code_dim < 1:
            raise ValueError(f"code_dim must be a positive integer, got {code_dim!r}")
        if bits not in BITS:
            raise ValueError(f"code bits must be one of {sorted(BITS)}, got {bits!r}")
        self.kind, self.dim, self.code_dim, self.bits, self.seed = kind, dim, code_dim, bits, seed
        self.projection: np.ndarray | None = None  # (dim, out_dim); None: identity
        if kind == "random" and code_dim < dim:
            self.projection = random_orthogonal(dim, code_dim, seed)
        self.trained = kind != "pca"

    @property
    def projects(self) -> bool:
        return self.kind != "flat" and self.code_dim < self.dim

    @property
    def out_dim(self) -> int:
        """Dims of what is searched: the projection's once trained, else the full vector's."""
        return self.code_dim if self.projects and self.trained else self.dim

    @property
    def quantised(self) -> bool:
        """Codes are quantised (else float32): once trained, for pca and random."""
        return self.kind != "flat" and self.trained

    @property
    def code_bytes(self) -> int:
        return self.out_dim * self.bits // 8 if self.quantised else 4 * self.dim

    def train(self, vectors: np.ndarray) -> None:
        """Fit the PCA on these vectors (the first ``train_size`` the index stored)."""
        if self.kind != "pca" or self.trained:
            return
        if self.projects:
            x = np.asarray(vectors, dtype=np.float64)
            _, vecs = np.linalg.eigh(x.T @ x)  # uncentred: inner products stay cosines
            self.projection = np.ascontiguousarray(vecs[:, ::-1][:, : self.code_dim], dtype=np.float32)
        self.trained = True

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(n, dim) -> (n, out_dim) float32: what is quantised and searched (queries too)."""
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not self.trained or self.projection is None:
            return x
        y = x @ self.projection
        if self.kind == "random":  # JL: the angle is kept better than the length
            y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(y)

    def back(self, projected: np.ndarray) -> np.ndarray:
        """(n, out_dim) -> (n, dim): inner products of two back-projections equal theirs."""
        if not self.trained or self.projection is None:
            return np.ascontiguousarray(projected, dtype=np.float32)
        return np.ascontiguousarray(projected @ self.projection.T, dtype=np.float32)

    # -- faiss ------------------------------------------------------------------------------------
    def flat_index(self, sample: np.ndarray | None = None):
        """Exact search over the codes (the quantiser trained on ``sample``, projected)."""
        import faiss

        if not self.quantised:
            return faiss.IndexFlatIP(self.out_dim)
        qtype = getattr(faiss.ScalarQuantizer, BITS[self.bits])
        index = faiss.IndexScalarQuantizer(self.out_dim, qtype, faiss.METRIC_INNER_PRODUCT)
        if self.kind == "random":  # a fixed range: nothing to learn
            edge = np.full((2, self.out_dim), min(1.0, RANDOM_SIGMAS / np.sqrt(self.out_dim)), np.float32)
            edge[0] *= -1
            index.train(edge)
            return index
        index.sq.rangestat_arg = 0.05  # 5% headroom beyond the training range on each side
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        return index

    def ivf_index(self, flat, centroids: np.ndarray):
        """An IVF index with these (spherical) centroids and ``flat``'s quantiser: same codes."""
        import faiss

        quantizer = faiss.IndexFlatIP(self.out_dim)
        quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
        nlist = len(centroids)
        if not self.quantised:
            index = faiss.IndexIVFFlat(quantizer, self.out_dim, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.downcast_index(flat)
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.out_dim, nlist, inner.sq.qtype,
                                                  faiss.METRIC_INNER_PRODUCT, False)  # fmt: skip
            index.sq = inner.sq  # a copy: the codes of the flat index are valid here
        index.is_trained = True
        index.own_fields = True
        quantizer.this.disown()
        return index

    # -- persistence ------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "code_dim": self.code_dim, "bits": self.bits,
                "seed": self.seed, "trained": self.trained}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict, projection: np.ndarray | None) -> FrameCodec:
        codec = cls(state["kind"], int(state["dim"]), int(state["code_dim"]), int(state["bits"]), int(state["seed"]))
        codec.trained = bool(state["trained"])
        if codec.kind == "pca" and codec.trained and codec.projects:
            codec.projection = np.ascontiguousarray(projection, dtype=np.float32)
        return codec
