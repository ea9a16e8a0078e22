"""Near-duplicate index: lookups/s, recall@10 and memory per million vs exact search (IndexFlatIP).

Data: synthetic clustered unit vectors of the CLIP ViT-B/32 size (512-d): clusters of ~50
(cosine ~0.8 to their centre), and near-duplicate queries (a stored vector plus noise,
cosine ~0.96 to it), the shape of frame lookups for re-encoded copies. Ground truth and
the baseline are the same exact search, ``faiss.IndexFlatIP``, timed in this run.

The project's index is ``processing.vision.frame_index.FrameIndex`` as the workers build it (exact
until ``approx_threshold`` vectors, HNSW past it). Lookups are timed as NearDupStage makes
them: one video's frames (8 vectors) per call. recall@10 = |approx top-10 & exact top-10| / 10.
Its HNSW build is timed on a sample (it is slow on 2 cores), and a 1M build is only run when
its projected time fits (``--build-1m`` forces it). A reference IVF index (faiss, not the
project's class) is measured beside it, to show what an approximate index reaches here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Report, Timer, rss_mb, run  # noqa: E402

DIM = 512
PER_VIDEO = 8  # frames per video (PROCESSING_FRAMES_PER_VIDEO): vectors per lookup call
K = 10


def normalize(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def clustered(n: int, rng, dim: int = DIM, per_cluster: int = 50, spread: float = 0.75) -> np.ndarray:
    """``n`` unit vectors in clusters of ~``per_cluster`` (cosine ~1/sqrt(1+spread^2) to centre)."""
    k = max(1, n // per_cluster)
    centers = normalize(rng.standard_normal((k, dim), dtype=np.float32))
    labels = rng.integers(0, k, n)
    out = np.empty((n, dim), np.float32)
    scale = np.float32(spread / np.sqrt(dim))
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = centers[labels[s:e]] + scale * rng.standard_normal((e - s, dim), dtype=np.float32)
    return normalize(out)


def near_queries(x: np.ndarray, q: int, rng, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``q`` near-duplicates of stored vectors (cosine ~0.96), and which vector each copies."""
    src = rng.choice(len(x), q, replace=False)
    noisy = x[src] + np.float32(noise / np.sqrt(x.shape[1])) * rng.standard_normal((q, x.shape[1]), dtype=np.float32)
    return normalize(noisy.astype(np.float32)), src


def lookups_per_s(search, queries: np.ndarray, per_call: int | None = None, repeat: int = 3):
    """Vectors looked up per second (median of ``repeat`` passes) and the rows found.

    ``per_call=None``: all queries in one call (the index's best case, as faiss is usually
    benchmarked); ``per_call=8``: one video's frames per call, as NearDupStage calls it.
    """
    rows = None
    times = []
    step = per_call or len(queries)
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        parts = [search(queries[i : i + step])[1] for i in range(0, len(queries), step)]
        times.append(time.perf_counter() - start)
        rows = np.concatenate(parts)
    return len(queries) / float(np.median(times)), rows


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)]))


def index_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def measure_size(report: Report, n: int, n_queries: int, rng, args, budget_end: float) -> None:
    import faiss

    import settings
    from processing.vision.frame_index import FrameIndex

    label = f"{n // 1000}k" if n < 1_000_000 else f"{n / 1e6:g}M"
    with Timer() as t:
        x = clustered(n, rng)
        queries, src = near_queries(x, n_queries, rng)
    report.figure(f"{label}_data_seconds", t.seconds)

    # baseline: exact search, also the ground truth
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    big = n >= 1_000_000
    flat_qps, truth = lookups_per_s(lambda q: flat.search(q, K), queries, repeat=1 if big else 3)
    per_video = queries[: 80 if big else 200]
    flat_video_qps, _ = lookups_per_s(lambda q: flat.search(q, K), per_video, PER_VIDEO, repeat=1)
    report.figure(f"{label}_flat_lookups_per_s_8_per_call", flat_video_qps)
    report.figure(f"{label}_flat_lookups_per_s", flat_qps)
    report.figure(f"{label}_flat_mb_per_million", index_bytes(flat) / n * 1e6 / 2**20)
    report.figure(f"{label}_queries_copy_found_at_10", float(np.mean([s in t for s, t in zip(src, truth)])))

    # the project's index, defaults
    proj = FrameIndex(DIM, settings.NEARDUP_APPROX_THRESHOLD)
    approx_at = proj.approx_threshold
    projected = None
    if n > approx_at and not args.build_1m:
        rate = report.figures.get("hnsw_build_vectors_per_s")
        projected = n / rate if rate else None
        if projected is None or time.monotonic() + projected > budget_end:
            why = (f"FrameIndex switches to HNSW (M={proj.hnsw_m}, efConstruction=80) past "
                   f"{approx_at:,} vectors; its build runs at ~{rate:,.0f} vectors/s on a sample here, "
                   f"so {label} would take at least ~{projected / 60:,.0f} min" if rate
                   else "HNSW build rate unknown")  # fmt: skip
            report.not_measured(f"project index lookups/s at {label}", why, ">= 2,000", flat_qps, "q/s")
            report.not_measured(f"project index recall@10 at {label}", why, ">= 0.95", 1.0)
            _reference_ivf(report, label, x, queries, truth, flat_qps)
            return
    with Timer() as t:
        for s in range(0, n, 50_000):
            proj.add_vectors(x[s : s + 50_000], np.arange(s, min(n, s + 50_000)) // PER_VIDEO)
    report.figure(f"{label}_project_build_seconds", t.seconds)
    kind = type(proj.index).__name__
    qps, rows = lookups_per_s(lambda q: proj.search(q, K), queries, repeat=1 if big else 3)
    rec = recall_at_k(rows, truth)
    video_qps, _ = lookups_per_s(lambda q: proj.search(q, K), per_video, PER_VIDEO, repeat=1)
    report.figure(f"{label}_project_lookups_per_s_8_per_call", video_qps)
    mb = index_bytes(proj.index) / n * 1e6 / 2**20
    report.figure(f"{label}_project_index_kind", kind)
    report.figure(f"{label}_project_mb_per_million", mb)
    need = 2000 if n >= 1_000_000 else None
    report.target(f"project index lookups/s at {label}", qps, flat_qps, ">= 2,000" if need else "(figure)",
                  (qps >= 2000) if need else None, unit="q/s", note=f"{kind}; {mb:,.0f} MB per million")  # fmt: skip
    report.target(f"project index recall@10 at {label}", rec, 1.0, ">= 0.95", rec >= 0.95)
    report.target(f"project lookups/s at {label}, 8 per call (as NearDupStage)", video_qps, flat_video_qps,
                  "(figure)", None, unit="q/s")  # fmt: skip
    del proj
    _reference_ivf(report, label, x, queries, truth, flat_qps)


def _reference_ivf(report: Report, label: str, x, queries, truth, flat_qps) -> None:
    """faiss IVF (not the project's class): the smallest nprobe reaching recall@10 >= 0.95."""
    import faiss

    n = len(x)
    nlist = 1024 if n >= 500_000 else 256
    ivf = faiss.index_factory(DIM, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(1)
    with Timer() as t:
        ivf.train(x[rng.choice(n, min(n, 40 * nlist), replace=False)])
        ivf.add(x)
    report.figure(f"{label}_ivf{nlist}_build_seconds", t.seconds)
    best = None
    for nprobe in (4, 8, 16, 32, 64):
        ivf.nprobe = nprobe
        qps, rows = lookups_per_s(lambda q: ivf.search(q, K), queries, repeat=1)
        rec = recall_at_k(rows, truth)
        report.figure(f"{label}_ivf{nlist}_nprobe{nprobe}", {"lookups_per_s": round(qps), "recall_at_10": round(rec, 4)})
        if rec >= 0.95:
            best = (nprobe, qps, rec)
            break
    if best:
        report.figure(f"{label}_reference_ivf", f"IVF{nlist},Flat nprobe={best[0]}: {best[1]:,.0f} lookups/s, "
                                                f"recall@10 {best[2]:.3f} (flat {flat_qps:,.0f}/s)")  # fmt: skip


def hnsw_sample(report: Report, rng, n: int) -> None:
    """The project's HNSW configuration on a sample: build rate, lookups/s, recall@10."""
    import faiss

    from processing.vision.frame_index import FrameIndex

    x = clustered(n, rng)
    queries, _ = near_queries(x, 400, rng)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    _, truth = flat.search(queries, K)
    proj = FrameIndex(DIM, approx_threshold=1)  # HNSW from the first vector: its settings
    proj.add_vectors(x[:1], np.zeros(1, np.int64))
    with Timer() as t:
        proj.add_vectors(x[1:], np.arange(1, n) // PER_VIDEO)
    rate = (n - 1) / t.seconds
    qps, rows = lookups_per_s(lambda q: proj.search(q, K), queries, repeat=3)
    video_qps, _ = lookups_per_s(lambda q: proj.search(q, K), queries[:200], PER_VIDEO, repeat=1)
    report.figure("hnsw_sample_lookups_per_s_8_per_call", video_qps)
    report.figure("hnsw_sample_vectors", n)
    report.figure("hnsw_build_vectors_per_s", rate)
    report.figure("hnsw_sample_lookups_per_s", qps)
    report.figure("hnsw_sample_recall_at_10", recall_at_k(rows, truth))
    report.figure("hnsw_sample_mb_per_million", index_bytes(proj.index) / n * 1e6 / 2**20)


def main(report: Report, args) -> None:
    import faiss

    try:
        from processing.vision.frame_index import FrameIndex  # noqa: F401
    except ImportError as exc:
        report.not_measured("project index", f"processing.vision.frame_index.FrameIndex: {exc}", ">= 2,000")
        return
    budget_end = time.monotonic() + (100 if args.quick else 1500)
    rng = np.random.default_rng(0)
    report.figure("threads", faiss.omp_get_max_threads())
    report.figure("dim", DIM)
    hnsw_sample(report, rng, 10_000 if args.quick else 50_000)
    sizes = [100_000] if args.quick and not args.with_1m else [100_000, 1_000_000]
    if args.quick and not args.with_1m:
        report.note("--quick: 1M measured for the baseline and the reference IVF only when --with-1m; "
                    "the project's 1M HNSW build is projected from the sample's build rate")  # fmt: skip
    for n in sizes:
        measure_size(report, n, 1000 if n < 1_000_000 else 400, rng, args, budget_end)
    if args.quick and not args.with_1m:
        rate = report.figures["hnsw_build_vectors_per_s"]
        report.not_measured("project index lookups/s at 1M",
                            f"--quick; FrameIndex HNSW builds at ~{rate:,.0f} vectors/s on a "
                            f"{report.figures['hnsw_sample_vectors']:,} sample here, slower as it grows: "
                            f"at least ~{1e6 / rate / 60:,.0f} min for 1M", ">= 2,000", unit="q/s")  # fmt: skip
    report.figure("rss_mb", rss_mb())


def _extra(parser) -> None:
    parser.add_argument("--with-1m", action="store_true", help="with --quick: also the 1M point")
    parser.add_argument("--build-1m", action="store_true",
                        help="build the project's index at 1M even when projected to take long")  # fmt: skip


if __name__ == "__main__":
    run(main, "index", __doc__.splitlines()[0], extra=_extra)
