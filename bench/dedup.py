"""Dedup quality: pairwise precision / recall / F1 of the project's whole dedup vs videohash2.

The set is built here from the real clips in tests/data with ffmpeg (cached under
bench/results/dedup_set, gitignored): for each original, one copy of every kind below, plus
unrelated clips (the other tests/data clips and synthetic ones) as distractors.
gradio_b.mp4 is the first 5 s of gradio_world.mp4 (checked frame by frame), so it counts as
a copy of it (kind ``cut_5s_natural``), not as a distractor.

The project's dedup runs as a user gets it, in arrival order (originals, distractors, then
copies), with the project's default thresholds:
1. exact: same sha256 (``pipelines.media.sha256_file``) as a video seen before (crawl side);
2. near-dup: what is left goes through the worker stages frames -> embed -> neardup
   (``processing/stages``, classes from ``ProcessingConfig.from_settings().stages``), in batches of
   ``PROCESSING_BATCH_SIZE``; NearDupStage decides by the perceptual hash the crawl put on
   the item (``pipelines.media.phash``, ``settings.PHASH_MAX_DISTANCE`` bits) and, when that
   finds nothing, by frame embeddings (``settings.NEARDUP_THRESHOLD``).
Each "duplicate of" link joins two clusters; a pair is predicted a duplicate when both
videos end in one cluster. For comparison, ``phash_only`` scores the hash pairwise on its
own, and ``--no-phash`` runs the stages without the item's hash (embedding layer only);
``--dedup-features`` overrides EmbedStage's ``dedup_features`` (gray / color) to compare
them. Baseline: videohash2 ``is_similar`` (its default: <= 10 of 64 bits differ), pairwise,
on the same files.

Scoring: (original, copy) pairs are positives; pairs of unrelated videos are negatives;
pairs of two copies of the same original are neither (they *are* duplicates of each other,
so counting them as negatives would punish a dedup that links them).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import RESULTS, ROOT, Report, Timer, run  # noqa: E402

DATA = ROOT / "tests" / "data"
SET_DIR = RESULTS / "dedup_set"
ENC = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an"]
# kind -> (file suffix, ffmpeg arguments between input and output; None: byte copy)
KINDS: dict[str, tuple[str, list[str] | None]] = {
    "identical": (".mp4", None),
    "low_quality": (".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-crf", "40", "-an"]),
    "half_size": (".mp4", ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", *ENC]),
    "crop_80": (".mp4", ["-vf", "crop=trunc(iw*0.4)*2:trunc(ih*0.4)*2", *ENC]),
    "logo_box": (".mp4", ["-vf", "drawbox=x=iw*0.04:y=ih*0.04:w=iw*0.22:h=ih*0.14:color=white@0.9:t=fill", *ENC]),
    "pillarbox": (".mp4", ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2,pad=trunc(iw*2/3)*2:ih:(ow-iw)/2:0:black", *ENC]),
    "trim_2s": (".mp4", ["-ss", "2", *ENC]),
    "vp9_gray_12fps": (".webm", ["-vf", "fps=12,format=gray,format=yuv420p", "-c:v", "libvpx-vp9",
                                 "-b:v", "0", "-crf", "45", "-deadline", "realtime", "-cpu-used", "8", "-an"]),
    "cut_20s": (".mp4", ["-ss", "5", "-t", "20", *ENC]),  # only for originals longer than 25 s
}
QUICK_ORIGINALS = ["bikes", "bigbuckbunny", "gradio_world"]
FULL_ORIGINALS = QUICK_ORIGINALS + ["gradio_a", "carphone_pristine"]
# Relations already in tests/data: gradio_b.mp4 is the first 5 s of gradio_world.mp4 (same frames).
NATURAL = {"gradio_b": ("gradio_world", "cut_5s_natural")}
SYNTHETIC = {  # lavfi sources, 8 s at 640x360
    "syn_testsrc2": "testsrc2=size=640x360:rate=25",
    "syn_mandelbrot": "mandelbrot=size=640x360:rate=25",
    "syn_life": "life=size=640x360:rate=25:mold=10:ratio=0.1:death_color=#003000:life_color=#00ff80",
    "syn_cellauto": "cellauto=size=640x360:rate=25:rule=110",
    "syn_gradients": "gradients=size=640x360:rate=25:speed=0.05",
    "syn_rgbtestsrc": "rgbtestsrc=size=640x360:rate=25",
}


@dataclass
class Clip:
    name: str
    path: Path
    family: str  # the original it comes from (itself for originals and distractors)
    kind: str  # "original", "distractor", or a key of KINDS
    signals: dict = field(default_factory=dict)


def _ffmpeg(args: list[str], out: Path) -> None:
    tmp = out.with_name(f".tmp-{out.name}")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(tmp)]
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    tmp.rename(out)


def duration_of(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, timeout=60)  # fmt: skip
    return float(out.stdout.strip() or 0)


def _make(job: tuple) -> None:
    kind, src, out, args = job
    if out.exists():
        return
    if args is None:
        shutil.copyfile(src, out)
    elif kind == "synthetic":
        _ffmpeg(["-f", "lavfi", "-i", args, "-t", "8", *ENC], out)
    else:
        _ffmpeg(["-i", str(src), *args], out)


def build_set(quick: bool) -> list[Clip]:
    """The clips (built once, cached): originals, their copies, and distractors."""
    SET_DIR.mkdir(parents=True, exist_ok=True)
    originals = QUICK_ORIGINALS if quick else FULL_ORIGINALS
    clips, jobs = [], []
    for name in originals:
        src = DATA / f"{name}.mp4"
        clips.append(Clip(name, src, name, "original"))
        long_enough = duration_of(src) > 25
        for kind, (suffix, args) in KINDS.items():
            if kind == "cut_20s" and not long_enough:
                continue
            out = SET_DIR / f"{name}__{kind}{suffix}"
            jobs.append((kind, src, out, args))
            clips.append(Clip(out.stem, out, name, kind))
    for src in sorted(DATA.glob("*.mp4")):
        if src.stem in NATURAL and NATURAL[src.stem][0] in originals:
            family, kind = NATURAL[src.stem]
            clips.append(Clip(src.stem, src, family, kind))
        elif src.stem not in originals:
            clips.append(Clip(src.stem, src, src.stem, "distractor"))
    for name, source in list(SYNTHETIC.items())[: 3 if quick else None]:
        out = SET_DIR / f"{name}.mp4"
        jobs.append(("synthetic", None, out, source))
        clips.append(Clip(name, out, name, "distractor"))
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_make, jobs))
    return clips


# -- the project's dedup ----------------------------------------------------------------------
class Clusters:
    """Union-find over clip names: a "duplicate of" link joins two clusters."""

    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, n):
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def join(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def crawl_side(clips: list[Clip]) -> tuple[list[Clip], dict[str, tuple[str, str]]]:
    """Exact dedup in arrival order (pipelines/dedup.py's rule), plus each clip's phash.

    Returns the clips that go on to the workers and name -> (duplicate_of, "exact").
    """
    from pipelines.media import MediaError, phash, probe, sha256_file

    links: dict[str, tuple[str, str]] = {}
    by_sha: dict[str, str] = {}
    left = []
    for clip in clips:
        clip.signals["sha256"] = sha = sha256_file(clip.path)
        try:
            clip.signals["probe"] = probe(clip.path, timeout=60)
            clip.signals["phash"] = phash(clip.path, timeout=60)
        except MediaError as exc:
            clip.signals["error"] = f"{exc.code}: {exc}"
        if sha in by_sha:
            links[clip.name] = (by_sha[sha], "exact")
            continue
        by_sha[sha] = clip.name
        left.append(clip)
    return left, links


def phash_pairs(clips: list[Clip]) -> set[frozenset]:
    """Pairs within ``settings.PHASH_MAX_DISTANCE`` bits (pairwise, as a dedup layer would)."""
    import settings
    from pipelines.media import hamming

    return {frozenset((a.name, b.name)) for a, b in itertools.combinations(clips, 2)
            if a.signals.get("phash") and b.signals.get("phash")
            and hamming(a.signals["phash"], b.signals["phash"]) <= settings.PHASH_MAX_DISTANCE}  # fmt: skip


def worker_side(clips: list[Clip], workdir: Path, dedup_features: str | None = None,
                use_phash: bool = True) -> tuple[dict[str, tuple[str, str]], dict[str, int], dict[str, str]]:
    """frames -> embed -> neardup as the workers run them.

    Returns name -> (dup_of, "neardup"), the neardup stage's counts (which layer matched) and
    name -> "dup_of similarity layer" for each link (the layer: phash when the similarity is
    1 - distance/64 of the two hashes within PHASH_MAX_DISTANCE, else embedding).
    """
    import importlib

    import settings
    from crawler.items import DUPLICATE, VideoItem
    from processing.config import ProcessingConfig
    from processing.work import Work

    cfg = ProcessingConfig.from_settings(data_dir=workdir, num_workers=1)
    stages = []
    for name in ("frames", "embed", "neardup"):
        module, _, cls = cfg.stages[name].partition(":")
        stage = getattr(importlib.import_module(module), cls).from_config(cfg)
        if name == "embed" and dedup_features:
            stage.dedup_features = dedup_features
        stage.setup()
        stages.append(stage)
    by_id = {}
    works = []
    for clip in clips:
        item = VideoItem(url=clip.path.as_uri(), source="bench", path=str(clip.path),
                         sha256=clip.signals["sha256"], video_id=clip.signals["sha256"],
                         phash=clip.signals.get("phash") if use_phash else None)  # fmt: skip
        for key, value in (clip.signals.get("probe") or {}).items():
            if hasattr(item, key):
                setattr(item, key, value)
        by_id[item.video_id] = clip.name
        works.append(Work(item=item))
    links: dict[str, tuple[str, str]] = {}
    detail: dict[str, str] = {}
    hashes = {c.name: c.signals.get("phash") if use_phash else None for c in clips}

    def note(name: str, other: str, similarity) -> None:
        from pipelines.media import hamming

        a, b = hashes.get(name), hashes.get(other)
        by_hash = (a and b and hamming(a, b) <= settings.PHASH_MAX_DISTANCE
                   and abs((similarity or 0) - (1 - hamming(a, b) / 64)) < 1e-3)  # fmt: skip
        detail[name] = f"{other} {similarity} {'phash' if by_hash else 'embedding'}"

    size = settings.PROCESSING_BATCH_SIZE
    for start in range(0, len(works), size):
        batch = works[start : start + size]
        for stage in stages:
            batch = stage.process_batch(batch)
        for work in batch:
            item = work.item
            if item.status == DUPLICATE and item.duplicate_of in by_id:
                links[by_id[item.video_id]] = (by_id[item.duplicate_of], "neardup")
                note(by_id[item.video_id], by_id[item.duplicate_of], item.similarity)
            elif item.errors:
                next(c for c in clips if c.name == by_id[item.video_id]).signals["error"] = str(item.errors)
            for update in work.updates:
                if update.duplicate_of in by_id and update.video_id in by_id:
                    links[by_id[update.video_id]] = (by_id[update.duplicate_of], "neardup")
                    note(by_id[update.video_id], by_id[update.duplicate_of], update.similarity)
    for stage in stages:
        stage.teardown()
    return links, dict(stages[-1].stats.counts), detail


# -- the baseline -------------------------------------------------------------------------------
def _videohash(path: str) -> str | None:
    from videohash2 import VideoHash

    storage = tempfile.mkdtemp(prefix="vh-")
    try:
        return VideoHash(path=path, storage_path=storage).hash  # "0b..." 64 bits
    except Exception:  # noqa: BLE001 - a file the baseline cannot hash is a miss, not a crash
        return None
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def videohash_pairs(clips: list[Clip], cache: bool = False) -> set[frozenset]:
    """Pairs videohash2 calls similar. ``cache``: reuse hashes from an earlier run (keyed by
    sha256; the hash of a file never changes) so that ``--quick`` stays quick."""
    import json
    from math import ceil

    cache_path = SET_DIR / "videohash2.json"
    known = json.loads(cache_path.read_text()) if cache and cache_path.exists() else {}
    todo = [c for c in clips if c.signals["sha256"] not in known]
    with ProcessPoolExecutor(max_workers=2) as pool:
        for clip, value in zip(todo, pool.map(_videohash, [str(c.path) for c in todo])):
            known[clip.signals["sha256"]] = value
    cache_path.write_text(json.dumps(known))
    hashes = {c.name: known[c.signals["sha256"]] for c in clips}
    limit = ceil(0.15 * 64)  # VideoHash.is_similar: similar_percentage = 15 -> 10 bits
    pairs = set()
    for a, b in itertools.combinations(clips, 2):
        ha, hb = hashes[a.name], hashes[b.name]
        if ha and hb and (int(ha, 2) ^ int(hb, 2)).bit_count() <= limit:
            pairs.add(frozenset((a.name, b.name)))
    return pairs


# -- scoring ------------------------------------------------------------------------------------
def truth(clips: list[Clip]) -> tuple[set[frozenset], set[frozenset]]:
    """(positives, negatives); same-family copy-copy pairs are in neither."""
    pos, neg = set(), set()
    for a, b in itertools.combinations(clips, 2):
        pair = frozenset((a.name, b.name))
        if a.family != b.family:
            neg.add(pair)
        elif "original" in (a.kind, b.kind):
            pos.add(pair)
    return pos, neg


def score(predicted: set[frozenset], clips: list[Clip]) -> dict:
    pos, neg = truth(clips)
    tp = len(predicted & pos)
    fp = len(predicted & neg)
    fn = len(pos - predicted)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_kind = {}
    for clip in clips:
        if clip.kind not in ("original", "distractor"):
            hit = frozenset((clip.name, clip.family)) in predicted
            found, total = per_kind.get(clip.kind, (0, 0))
            per_kind[clip.kind] = (found + hit, total + 1)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "per_kind": {k: f / t for k, (f, t) in per_kind.items()},
            "false_positives": sorted("~".join(sorted(p)) for p in predicted & neg),
            "false_negatives": sorted("~".join(sorted(p)) for p in pos - predicted)}  # fmt: skip


def cluster_pairs(clips: list[Clip], links: dict[str, tuple[str, str]]) -> set[frozenset]:
    clusters = Clusters([c.name for c in clips])
    for name, (other, _) in links.items():
        clusters.join(name, other)
    return {frozenset((a.name, b.name)) for a, b in itertools.combinations(clips, 2)
            if clusters.find(a.name) == clusters.find(b.name)}  # fmt: skip


def main(report: Report, args) -> None:
    import settings

    with Timer() as t:
        clips = build_set(args.quick)
    report.figure("set_build_seconds", t.seconds)
    report.figure("clips", len(clips))
    report.figure("originals", sum(c.kind == "original" for c in clips))
    report.figure("distractors", sum(c.kind == "distractor" for c in clips))
    pos, neg = truth(clips)
    report.figure("positive_pairs", len(pos))
    report.figure("negative_pairs", len(neg))
    report.figure("thresholds", {"PHASH_MAX_DISTANCE": settings.PHASH_MAX_DISTANCE,
                                 "NEARDUP_THRESHOLD": settings.NEARDUP_THRESHOLD})  # fmt: skip
    # arrival order: originals, distractors, then the copies
    order = {"original": 0, "distractor": 1}
    clips.sort(key=lambda c: (order.get(c.kind, 2), c.name))

    with Timer() as t:
        left, exact = crawl_side(clips)
    report.figure("crawl_side_seconds", t.seconds)
    neardup: dict[str, tuple[str, str]] = {}
    report.figure("dedup_features", args.dedup_features or "EmbedStage default")
    report.figure("phash_layer", not args.no_phash)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-") as workdir, Timer() as t:
        try:
            neardup, counts, detail = worker_side(left, Path(workdir), args.dedup_features, not args.no_phash)
        except (ImportError, AttributeError, KeyError, ValueError) as exc:
            report.not_measured("F1", f"the worker stages could not run: {type(exc).__name__}: {exc}", ">= 0.95")
            return
    report.figure("worker_side_seconds", t.seconds)
    report.figure("links", {"exact": len(exact), "neardup": len(neardup)})
    report.figure("neardup_counts", counts)
    report.figure("neardup_matches", detail)
    errors = {c.name: c.signals["error"] for c in clips if c.signals.get("error")}
    if errors:
        report.figure("media_errors", errors)
    shipped_pairs = cluster_pairs(clips, {**exact, **neardup})
    ours = score(shipped_pairs, clips)
    layers = {"exact_only": score(cluster_pairs(clips, exact), clips),
              "phash_only_pairwise": score(phash_pairs(clips), clips),
              "exact_plus_neardup": ours}  # fmt: skip
    report.figure("layers", {k: {m: round(v[m], 4) for m in ("precision", "recall", "f1")} | {"per_kind": v["per_kind"]}
                             for k, v in layers.items()})  # fmt: skip

    with Timer() as t:
        theirs = score(videohash_pairs(clips, cache=args.quick), clips)
    report.figure("videohash2_seconds", t.seconds)
    report.figure("project", ours)
    report.figure("videohash2", theirs)
    report.note("as shipped, duplicates are decided by sha256 (crawl) and the near-dup stage (workers): "
                f"perceptual hash within PHASH_MAX_DISTANCE={settings.PHASH_MAX_DISTANCE} bits, else frame "
                f"embeddings at NEARDUP_THRESHOLD={settings.NEARDUP_THRESHOLD}"
                + (" (this run: without the phash layer)" if args.no_phash else ""))  # fmt: skip

    report.target("F1", ours["f1"], theirs["f1"], ">= 0.95", ours["f1"] >= 0.95)
    report.target("precision", ours["precision"], theirs["precision"], ">= 0.99",
                  ours["precision"] >= 0.99,
                  note=("false positives: " + ", ".join(ours["false_positives"][:5])) if ours["fp"] else "")
    report.target("recall", ours["recall"], theirs["recall"], "(F1 target)", None,
                  note=("missed: " + ", ".join(ours["false_negatives"][:6])) if ours["fn"] else "")
    missed = [k for k, r in ours["per_kind"].items() if r < 1.0]
    all_found = len(ours["per_kind"]) - len(missed)
    report.target("kinds of copy all found", all_found, sum(r >= 1.0 for r in theirs["per_kind"].values()),
                  f"= {len(ours['per_kind'])} (every kind)", not missed,
                  note=("missed: " + ", ".join(missed)) if missed else "")  # fmt: skip
    for kind, recall in ours["per_kind"].items():
        report.target(f"recall {kind}", recall, theirs["per_kind"].get(kind), "1.0", recall >= 1.0)


def options(parser) -> None:
    parser.add_argument("--dedup-features", choices=("gray", "color"), default=None,
                        help="override EmbedStage's dedup_features (default: the stage's default)")
    parser.add_argument("--no-phash", action="store_true",
                        help="run the stages without the item's phash (embedding layer only)")


if __name__ == "__main__":
    run(main, "dedup", __doc__.splitlines()[0], extra=options)
