"""Near-duplicate index at scale: bytes per video, lookups/s per shard, recall@10 vs exact search, build time.

The project's index is ``processing.vision.frame_index.FrameIndex`` as the workers build it:
video by video (8 frames each, added in batches of 1,000 videos), codes from the configured
codec (default: random rotation to 96 dims, 8 bits), exact over the codes up to
``NEARDUP_APPROX_THRESHOLD`` vectors, then IVF re-clustered at each 4x growth, and the full
vectors as float16 on disk for the decisions. One FrameIndex is one shard (one thread here).

Data: synthetic frame embeddings shaped like the real ones. On the bench set's
efficientnet-lite0 frames (tests/data clips) the mean vector holds 29% of the energy (so two
unrelated frames score ~0.3), and the rest falls off as a power law; the generator uses that
mean share and a flatter law (exponent ``--alpha`` 1.0, real crawls being more varied than
ten clips) in ``--dim`` dims. A video is a centre plus 8 frames around it (cosine ~0.8
between its frames); a query video is a copy of a stored one, each frame re-drawn around the
original (cosine ~0.9: a re-encode), as NearDupStage looks them up: 8 frames per call.

Figures: build seconds; bytes per video in memory (the index's own count, and this process's
RSS growth) and on disk; lookups/s (one video = 8 frames, ``best_per_video``, k=32) and
exact reads/s (``video_vectors``, what decides a match); recall@10 of each query frame
against exact float search (top 10 by inner product over every stored vector, computed in
this run chunk by chunk, which is also the baseline's lookup rate); copy found = the source
frame among the 32 proposed; similarity error of the codes at the source frame. ``--nprobe``
sweeps the IVF lists searched.
"""

from __future__ import annotations

import gc
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Report, Timer, rss_mb, run  # noqa: E402

PER_VIDEO = 8  # frames per video (PROCESSING_FRAMES_PER_VIDEO)
K = 10
MEAN_SHARE = 0.29  # measured: |mean|^2 of unit efficientnet-lite0 frame vectors of the bench set
FRAME_SPREAD = 0.6  # frames around their video's centre: cosine ~0.8 between frames of a video
COPY_NOISE = 0.65  # a copy's frame around the original's: cosine ~0.9
CHUNK_VIDEOS = 10_000


class Frames:
    """Deterministic synthetic frame vectors, generated chunk by chunk (the same for the same seed)."""

    def __init__(self, dim: int, alpha: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        lam = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
        self.scale = np.sqrt(lam / lam.sum() * (1 - MEAN_SHARE)).astype(np.float32)  # per-dim std
        mean = rng.standard_normal(dim)
        self.mean = (mean / np.linalg.norm(mean) * np.sqrt(MEAN_SHARE)).astype(np.float32)
        self.dim, self.seed = dim, seed

    def noise(self, rng, n: int) -> np.ndarray:
        return rng.standard_normal((n, self.dim), dtype=np.float32) * self.scale

    def chunk(self, c: int, videos: int) -> np.ndarray:
        """(videos, PER_VIDEO, dim) unit vectors of chunk ``c``."""
        rng = np.random.default_rng([self.seed, c])
        centres = self.mean + self.noise(rng, videos)
        x = centres[:, None, :] + FRAME_SPREAD * self.noise(rng, videos * PER_VIDEO).reshape(videos, PER_VIDEO, -1)
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        return x

    def copy(self, frames: np.ndarray, rng) -> np.ndarray:
        q = frames + COPY_NOISE * self.noise(rng, len(frames))
        return q / np.linalg.norm(q, axis=1, keepdims=True)


def video_id(n: int) -> str:
    return hashlib.sha256(n.to_bytes(8, "big")).hexdigest()


def chunks(total_videos: int):
    for c, start in enumerate(range(0, total_videos, CHUNK_VIDEOS)):
        yield c, start, min(CHUNK_VIDEOS, total_videos - start)


def make_queries(gen: Frames, total_videos: int, n_query_videos: int, rng):
    """Copies of ``n_query_videos`` stored videos: (queries (n*8, dim), source vector ids, source videos)."""
    sources = np.sort(rng.choice(total_videos, n_query_videos, replace=False))
    frames = np.zeros((n_query_videos, PER_VIDEO, gen.dim), np.float32)
    for c, start, n in chunks(total_videos):
        mine = (sources >= start) & (sources < start + n)
        if mine.any():
            frames[mine] = gen.chunk(c, n)[sources[mine] - start]
    queries = gen.copy(frames.reshape(-1, gen.dim), np.random.default_rng(99))
    src_rows = (sources[:, None] * PER_VIDEO + np.arange(PER_VIDEO)).reshape(-1)  # global row = video*8 + slot
    return queries.astype(np.float32), src_rows, sources


def build(report: Report, label: str, gen: Frames, total_videos: int, queries: np.ndarray, options,
          approx_threshold: int, folder: Path, truth_k: int = K) -> tuple:  # fmt: skip
    """Add every video (timed), and the exact top-k of the queries over the same vectors (timed apart)."""
    from processing.vision.frame_index import FrameIndex

    gc.collect()
    rss0 = rss_mb() or 0.0
    index = FrameIndex(gen.dim, approx_threshold, options, exact_dir=folder)
    best_s = np.full((len(queries), truth_k), -np.inf, np.float32)
    best_i = np.full((len(queries), truth_k), -1, np.int64)
    build_s = truth_s = 0.0
    for c, start, n in chunks(total_videos):
        x = gen.chunk(c, n)
        t = time.perf_counter()
        index.add_many((video_id(start + v), x[v], 1.0, 10.0, None) for v in range(n))
        build_s += time.perf_counter() - t
        t = time.perf_counter()
        flat = x.reshape(-1, gen.dim)
        sims = queries @ flat.T
        part = np.argpartition(-sims, truth_k, axis=1)[:, :truth_k]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], 1)
        cand_i = np.concatenate([best_i, part + start * PER_VIDEO], 1)
        top = np.argsort(-cand_s, axis=1)[:, :truth_k]
        best_s, best_i = np.take_along_axis(cand_s, top, 1), np.take_along_axis(cand_i, top, 1)
        truth_s += time.perf_counter() - t
        del x, flat, sims, part, cand_s, cand_i
    gc.collect()
    vectors = total_videos * PER_VIDEO
    report.figure(f"{label}_build_seconds", round(build_s, 1))
    report.figure(f"{label}_build_vectors_per_s", round(vectors / build_s))
    report.figure(f"{label}_exact_search_lookups_per_s", round(len(queries) / truth_s, 2))
    report.figure(f"{label}_rss_growth_mb", round((rss_mb() or 0.0) - rss0, 1))
    return index, best_s, best_i, build_s, truth_s


def to_rows(ids: np.ndarray) -> np.ndarray:
    """FrameIndex vector ids (video << 8 | slot) -> global rows (video * 8 + slot) of the generator."""
    return np.where(ids >= 0, (ids >> 8) * PER_VIDEO + (ids & 255), -1)


def measure(report: Report, label: str, index, queries, truth_s, truth_i, src_rows, sources, truth_seconds,
            nprobes=()) -> dict:  # fmt: skip
    n_videos = len(index.videos)
    mem = index.memory_bytes()
    bits = index.codec.bits if index.codec.quantised else 32
    report.figure(f"{label}_index", f"{type(index.index).__name__}, {index.codec.kind} {index.codec.out_dim}-d "
                                    f"{bits}-bit, {index.ntotal:,} vectors")  # fmt: skip
    report.figure(f"{label}_bytes_per_video_memory", round(mem / n_videos, 1))
    report.figure(f"{label}_rss_bytes_per_video", round(report.figures[f"{label}_rss_growth_mb"] * 2**20 / n_videos, 1))
    if index.exact is not None:
        report.figure(f"{label}_bytes_per_video_disk", round(index.exact.nbytes() / n_videos, 1))
    groups = queries.reshape(-1, PER_VIDEO, queries.shape[1])
    results = {}
    for nprobe in (nprobes or (index.options.nprobe,)):
        if index.approximate:
            index.index.nprobe = nprobe
        t = time.perf_counter()
        proposed = [index.best_per_video(g, 32) for g in groups]
        video_qps = len(groups) / (time.perf_counter() - t)
        video_found = float(np.mean([int(s) in p for s, p in zip(sources, proposed)]))
        sims, ids = index.search(queries, 32)
        rows = to_rows(ids)
        recall = float(np.mean([len(set(r[:K]) & set(t[:K])) / K for r, t in zip(rows, truth_i)]))
        found = rows == src_rows[:, None]
        copy_found = float(found.any(1).mean())
        results[nprobe] = {"video_lookups_per_s": round(video_qps, 1), "frame_lookups_per_s": round(8 * video_qps),
                           "recall_at_10": round(recall, 4), "copy_found_at_32": round(copy_found, 4),
                           "source_video_proposed": round(video_found, 4)}  # fmt: skip
        if nprobe == index.options.nprobe or not index.approximate:
            hit = found.argmax(1)
            code_sim = np.where(found.any(1), sims[np.arange(len(sims)), hit], np.nan)
            exact_sim = truth_s[:, 0]  # the source is the exact top-1 for these copies (checked below)
            src_is_top1 = truth_i[:, 0] == src_rows
            err = np.abs(code_sim - exact_sim)[src_is_top1 & found.any(1)]
            results[nprobe]["source_is_exact_top1"] = round(float(src_is_top1.mean()), 4)
            results[nprobe]["code_sim_error_mean"] = round(float(np.mean(err)), 4) if len(err) else None
            results[nprobe]["code_sim_error_p99"] = round(float(np.quantile(err, 0.99)), 4) if len(err) else None
    if index.approximate:
        index.index.nprobe = index.options.nprobe
    report.figure(f"{label}_by_nprobe" if index.approximate else f"{label}_flat", results)
    for bar in (0.5, 0.7):  # min(frame_threshold, phash_confirm); frame_threshold - the codes' margin
        decision_cost(report, label, index, groups, bar)
    rng = np.random.default_rng(5)
    picks = [index.videos[int(n)]["video_id"] for n in rng.choice(n_videos, 500)]
    t = time.perf_counter()
    for vid in picks:
        index.video_vectors(vid)
    report.figure(f"{label}_exact_reads_per_s", round(len(picks) / (time.perf_counter() - t)))
    chosen = results[index.options.nprobe if index.approximate else next(iter(results))]
    return chosen | {"bytes_per_video": mem / n_videos, "exact_qps": len(queries) / truth_seconds}


def decision_cost(report: Report, label: str, index, groups: np.ndarray, bar: float = 0.5) -> None:
    """The index side of one near-dup decision as NearDupIndex.decide makes it: the frame search,
    the hash lookup, then the exact vectors of every video proposed (a frame at least ``bar``
    similar in code space: ``min(frame_threshold, phash_confirm)``) and their frame matrix."""
    rng = np.random.default_rng(7)
    proposed_n = []
    t = time.perf_counter()
    for g in groups:
        proposed = [n for n, sims in index.best_per_video(g, 32).items() if sims.max() >= bar]
        index.hashes_within(f"{int(rng.integers(0, 2**63)):016x}", 10)
        for num in proposed:
            (g @ index.video_vectors(index.videos[num]["video_id"]).T).max(axis=1)
        proposed_n.append(len(proposed))
    seconds = time.perf_counter() - t
    report.figure(f"{label}_decisions_per_s_bar_{bar}", {
        "decisions_per_s": round(len(groups) / seconds, 1),
        "videos_proposed_mean": round(float(np.mean(proposed_n)), 1), "videos_proposed_max": int(np.max(proposed_n))})


def snapshot_times(report: Report, label: str, index, folder: Path) -> None:
    from processing.vision.frame_index import FrameIndex

    with Timer() as t:
        index.save(folder)
    report.figure(f"{label}_save_seconds", round(t.seconds, 1))
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and not p.name.startswith("exact-"))
    report.figure(f"{label}_snapshot_mb_without_exact", round(size / 2**20, 1))
    with Timer() as t:
        back = FrameIndex.load(folder, index.dim, index.approx_threshold)
    report.figure(f"{label}_load_seconds", round(t.seconds, 1))
    assert len(back) == len(index) and back.ntotal == index.ntotal


def real_frames(frames: int) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (family, frame embeddings) of bench/dedup.py's quick set, as the workers compute them."""
    import importlib

    from bench.dedup import build_set
    from crawler.items import VideoItem
    from processing.config import ProcessingConfig
    from processing.work import Work

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ProcessingConfig.from_settings(data_dir=Path(tmp), num_workers=1)
        stages = []
        for name in ("frames", "embed"):
            module, _, cls = cfg.stages[name].partition(":")
            over = {"frames_per_video": frames} if name == "frames" else {}
            stage = getattr(importlib.import_module(module), cls).from_config(cfg, **over)
            stage.setup()
            stages.append(stage)
        for clip in build_set(True):
            work = Work(item=VideoItem(url=clip.path.as_uri(), source="bench", path=str(clip.path), video_id=clip.name))
            for stage in stages:
                stage.process_batch([work])
            if work.dedup_embeddings is not None and clip.name not in out:
                out[clip.name] = (clip.family, work.dedup_embeddings)
    return out


def real_codec_errors(report: Report, code_dims=(64, 96, 128, 256)) -> None:
    """On real frame embeddings (efficientnet-lite0, the dedup set): how far the codes move the
    best-frame similarity of every pair of videos in 0.7-0.9 (around the 0.8 vote threshold),
    for the random rotation and for a PCA fit on the OTHER families' frames (as a PCA fit on
    early content meets new content); and the share of a held-out family's energy the PCA keeps."""
    from processing.vision.codecs import FrameCodec

    clips = real_frames(16)
    names = sorted(clips)
    dim = next(iter(clips.values()))[1].shape[1]
    families = sorted({f for f, _ in clips.values()})
    report.figure("real_videos", len(names))
    report.figure("real_families", len(families))
    out = {}
    for kind in ("random", "pca"):
        for d in code_dims:
            errs, kept = [], []
            for fam in families:
                codec = FrameCodec(kind, dim, d)
                train = np.concatenate([v for f, v in clips.values() if f != fam])
                codec.train(train)
                index = codec.flat_index(codec.project(train))
                mine = [n for n in names if clips[n][0] == fam]

                def coded(x):
                    return index.sa_decode(index.sa_encode(codec.project(x)))

                for a in mine:
                    kept.append(float(np.mean(np.linalg.norm(codec.project(clips[a][1]), axis=1) ** 2)))
                    for b in names:
                        if a == b:
                            continue
                        exact = (clips[a][1] @ clips[b][1].T).max(1)
                        approx = (coded(clips[a][1]) @ coded(clips[b][1]).T).max(1)
                        band = (exact > 0.7) & (exact < 0.9)
                        errs.extend((approx - exact)[band])
            errs = np.array(errs)
            out[f"{kind}{d}"] = {"bias": round(float(errs.mean()), 4), "std": round(float(errs.std()), 4),
                                 "p99_abs": round(float(np.quantile(np.abs(errs), 0.99)), 4)}  # fmt: skip
            if kind == "pca":
                out[f"{kind}{d}"]["held_out_energy"] = round(float(np.mean(kept)), 3)
    report.figure("real_codec_similarity_error", out)


def main(report: Report, args) -> None:
    import faiss

    import settings
    from processing.vision.frame_index import IndexOptions

    faiss.omp_set_num_threads(args.threads)
    report.figure("threads", faiss.omp_get_max_threads())
    if args.real:
        real_codec_errors(report)
    vectors = args.vectors or (40_000 if args.quick else 10_000_000)
    total_videos = vectors // PER_VIDEO
    approx = args.approx_threshold or (10_000 if args.quick else settings.NEARDUP_APPROX_THRESHOLD)
    codecs = args.codecs or (["random", "pca", "flat"] if args.quick else ["random"])
    gen = Frames(args.dim, args.alpha)
    report.figure("dim", args.dim)
    report.figure("vectors", vectors)
    report.figure("videos", total_videos)
    report.figure("approx_threshold", approx)
    report.figure("spectrum", f"mean share {MEAN_SHARE}, power law exponent {args.alpha}")
    with Timer() as t:
        queries, src_rows, sources = make_queries(gen, total_videos, args.query_videos, np.random.default_rng(1))
    report.figure("query_frames", len(queries))
    report.figure("query_seconds", round(t.seconds, 1))
    base = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-index-"))
    label_n = f"{vectors / 1e6:g}M" if vectors >= 1_000_000 else f"{vectors // 1000}k"
    try:
        for codec in codecs:
            opts = IndexOptions(codec=codec, code_dim=args.code_dim, code_bits=8, nprobe=args.nprobe,
                                train_size=settings.NEARDUP_CODEC_TRAIN if not args.quick else 5_000)  # fmt: skip
            label = f"{label_n}_{codec}"
            folder = base / codec
            index, truth_s, truth_i, build_s, truth_seconds = build(report, label, gen, total_videos, queries, opts,
                                                                    approx, folder)  # fmt: skip
            got = measure(report, label, index, queries, truth_s, truth_i, src_rows, sources, truth_seconds,
                          nprobes=args.sweep if index.approximate else ())  # fmt: skip
            snapshot_times(report, label, index, folder)
            unit = "q/s"
            judged = codec != "flat" and vectors >= 1_000_000  # below, IVF centroids and slack weigh in
            report.target(f"bytes per video in memory, {label}", round(got["bytes_per_video"]), 8 * 1280 * 4,
                          "<= 1,024" if judged else "(figure)", got["bytes_per_video"] <= 1024 if judged else None,
                          unit="B", note="baseline: 8 x 1280 float32 (the index before)"
                          + ("" if judged else "; judged from 1M vectors up"))  # fmt: skip
            report.target(f"video lookups/s per shard, {label}", got["video_lookups_per_s"],
                          round(got["exact_qps"] / PER_VIDEO, 2), "(figure)", None, unit=unit,
                          note="baseline: exact float search over the same vectors, 8 frames per video")  # fmt: skip
            report.target(f"recall@10 vs exact, {label}", got["recall_at_10"], 1.0, "(figure)", None)
            report.target(f"source frame in the 32 nearest, {label}", got["copy_found_at_32"], 1.0, "(figure)", None)
            report.target(f"source video proposed (8 frames), {label}", got["source_video_proposed"], 1.0, ">= 0.99",
                          got["source_video_proposed"] >= 0.99)  # fmt: skip
            report.target(f"build seconds, {label}", round(build_s), None, "(figure)", None, unit="s")
            del index
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if not args.work_dir or not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report.figure("rss_mb", rss_mb())


def _extra(parser) -> None:
    parser.add_argument("--vectors", type=int, help="stored frame vectors (default 10M; --quick 40k)")
    parser.add_argument("--dim", type=int, default=512, help="input vector dims (default 512)")
    parser.add_argument("--alpha", type=float, default=1.0, help="power-law exponent of the spectrum")
    parser.add_argument("--codecs", nargs="+", choices=["random", "pca", "flat"], help="codecs to build")
    parser.add_argument("--code-dim", type=int, default=96)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--sweep", type=int, nargs="+", default=[16, 32, 64, 128], help="nprobe values measured")
    parser.add_argument("--approx-threshold", type=int, help="vectors before IVF (default: the setting)")
    parser.add_argument("--query-videos", type=int, default=125, help="query videos (8 frames each)")
    parser.add_argument("--threads", type=int, default=1, help="faiss threads (default 1)")
    parser.add_argument("--work-dir", help="where the index and its exact vectors go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the saved index in --work-dir")
    parser.add_argument("--real", action="store_true",
                        help="also the codecs' similarity error on real frame embeddings (the dedup set, ~minutes)")


if __name__ == "__main__":
    run(main, "index", __doc__.splitlines()[0], extra=_extra)
