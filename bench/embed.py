"""Embed throughput: frames/s of the embed stage inside the running pipeline vs the bare model.

The pipeline is the real one: videos are queued on a Redis stream (the benchmarks' spare db,
a unique KEY_PREFIX) and drained by ``python -m processing work --until-empty`` (Ray, decode
actors running beside the model actor). Only the embed stage is swapped, through the
documented ``PROCESSING_STAGES`` setting, for ``TimedEmbedStage``: the project's
``EmbedStage`` unchanged, plus a clock around each ``process_batch`` call and a copy of the
frames it received. The baseline then runs the bare model (``processing.vision.models``
embedder ``__call__``) on exactly those frame batches, with the same device, dtype
(precision), batch size and torch thread count the stage had. Steady state: the first
batch (warm-up) is left out on both sides when there is more than one.

``--model clip-vit-b32-random`` builds a CLIP ViT-B/32 (transformers' ``CLIPConfig()``
defaults) with random weights into a temporary folder: right for speed, not for results.
On a GPU machine the stage and the bare model run on CUDA and GPU utilisation is sampled
with ``nvidia-smi`` while the pipeline runs (see docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BENCH_REDIS_URL, PYTHON, ROOT, Report, Timer, bench_redis, project_env, run  # noqa: E402

from processing.stages.base import Stage  # noqa: E402

try:  # the stage may not exist yet in a partial checkout; the benchmark then says so
    from processing.stages.embed import EmbedStage
except ImportError as _exc:  # pragma: no cover
    EmbedStage = object  # type: ignore[assignment,misc]
    _IMPORT_ERROR: Exception | None = _exc
else:
    _IMPORT_ERROR = None

DATA = ROOT / "tests" / "data"
LOG_ENV = "BENCH_EMBED_LOG"  # where TimedEmbedStage appends one JSON line per batch
FRAMES_ENV = "BENCH_EMBED_FRAMES"  # where it saves the frames it was given (npz per batch)


class TimedEmbedStage(EmbedStage):  # type: ignore[misc,valid-type]
    """The project's EmbedStage with a clock around ``process_batch`` (benchmark only)."""

    def process_batch(self, works):
        import torch

        self.setup()
        arrays = [w.frames for w in works if not w.skip and w.frames is not None and len(w.frames)]
        start = time.perf_counter()
        out = super().process_batch(works)
        seconds = time.perf_counter() - start
        log, frames_dir = os.environ.get(LOG_ENV), os.environ.get(FRAMES_ENV)
        if log:
            name = ""
            if frames_dir and arrays:
                name = str(Path(frames_dir) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.npz")
                np.savez(name, *arrays)
            frames = int(sum(len(a) for a in arrays))
            passes = 2 if getattr(self, "dedup_features", None) == "gray" else 1  # + a gray copy each
            record = {"frames": frames, "images": frames * passes, "seconds": seconds, "npz": name,
                      "device": self.embedder.device, "precision": self.embedder.precision,
                      "batch_size": self.embedder.batch_size, "threads": torch.get_num_threads(),
                      "model": self.embedder.name, "at": time.time()}  # fmt: skip
            with open(log, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return out


class PassStage(Stage):
    """Stand-in for a project stage that does not exist yet (the run notes it)."""

    name = "pass"

    def process_one(self, work) -> None:
        pass


def stage_overrides() -> tuple[str, list[str]]:
    """PROCESSING_STAGES for the run: the timed embed stage; stand-ins for missing stages."""
    import importlib

    from processing.pipeline import STEPS

    defaults = {s.name: s.stage for s in STEPS}
    parts, missing = ["embed=bench.embed:TimedEmbedStage"], []
    for name in ("frames", "neardup", "labels"):
        module, _, cls = defaults[name].partition(":")
        try:
            getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            parts.append(f"{name}=bench.embed:PassStage")
            missing.append(name)
    return ",".join(parts), missing


def build_random_clip(folder: Path) -> str:
    """A CLIP ViT-B/32 with random weights (``CLIPConfig()`` defaults) saved to ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    model_dir = folder / "clip-vit-b32-random"
    CLIPModel(CLIPConfig()).save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    return f"clip:{model_dir}"


def queue_videos(client, prefix: str, n: int) -> int:
    """Queue ``n`` items made from the tests/data clips (repeated, each with its own id)."""
    from crawler.items import QUEUED, VideoItem
    from pipelines.media import probe, sha256_file
    from processing.config import ProcessingConfig
    from processing.runtime.stream import requeue

    cfg = ProcessingConfig.from_settings(key_prefix=prefix, num_gpus=0)

    clips = sorted(DATA.glob("*.mp4"))
    meta = {c: (sha256_file(c), probe(c)) for c in clips}
    for i in range(n):
        clip = clips[i % len(clips)]
        sha, info = meta[clip]
        vid = f"{sha[:56]}{i:08x}"  # a distinct id per copy: each is its own document
        item = VideoItem(url=f"{clip.as_uri()}?copy={i}", source="bench", path=str(clip), sha256=sha,
                         video_id=vid, status=QUEUED)  # fmt: skip
        for key, value in info.items():
            if hasattr(item, key):
                setattr(item, key, value)
        requeue(client, cfg, item)
    return n


class GpuSampler:
    """``nvidia-smi --query-gpu=utilization.gpu -l 1`` in the background, when there is a GPU."""

    def __init__(self):
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-l", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip

    def stop(self) -> list[float]:
        if self.proc is None:
            return []
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        values = []
        for line in out.splitlines():
            try:
                values.append(float(line.split(",")[0]))
            except ValueError:
                continue
        return values


def run_pipeline(model: str, n_videos: int, workdir: Path, timeout: float):
    """Queue videos, drain them with ``python -m processing work --until-empty``; batch records."""
    client = bench_redis()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    queue_videos(client, prefix, n_videos)
    log, frames_dir = workdir / "embed.jsonl", workdir / "frames"
    frames_dir.mkdir()
    stages, missing = stage_overrides()
    if "frames" in missing:
        raise RuntimeError("processing.stages.frames is missing: nothing to embed")
    env = project_env(REDIS_URL=BENCH_REDIS_URL, KEY_PREFIX=prefix, DATA_DIR=workdir / "data",
                      EMBED_MODEL=model, PROCESSING_STAGES=stages,
                      **{LOG_ENV: log, FRAMES_ENV: frames_dir})  # fmt: skip
    env.pop("CATALOGUE_PATH", None)
    cmd = [PYTHON, "-m", "processing", "work", "--until-empty", "--no-progress"]
    with Timer() as t:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    client.flushdb()
    if done.returncode != 0:
        raise RuntimeError(f"processing work exited {done.returncode}: {done.stderr.strip()[-600:]}")
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return records, t.seconds, done.stdout.strip()[-300:], missing


def bare_model(records: list[dict], repeat: int) -> tuple[list[float], dict]:
    """Seconds per batch of the bare embedder call on the stage's own frame batches."""
    import torch

    from processing.vision import models

    first = records[0]
    torch.set_num_threads(int(first["threads"]))
    spec = first["model"]
    embedder = models.load_image_embedder(spec, first["device"], first["precision"], int(first["batch_size"]))
    batches = []
    for rec in records:
        with np.load(rec["npz"]) as data:
            batches.append([data[k] for k in data.files])
    embedder(batches[0])  # warm-up
    seconds = []
    for batch in batches:
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            embedder(batch)
            if first["device"].startswith("cuda"):
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - start)
        seconds.append(float(np.median(samples)))
    setting = {k: first[k] for k in ("model", "device", "precision", "batch_size", "threads")}
    return seconds, setting, batches


def stage_alone(setting: dict, batches: list[list[np.ndarray]]) -> list[float]:
    """Seconds per batch of EmbedStage.process_batch in this process, outside the pipeline."""
    import torch

    from crawler.items import VideoItem
    from processing.work import Work

    stage = EmbedStage(model=setting["model"], device=setting["device"], precision=setting["precision"],
                       batch_size=int(setting["batch_size"]), threads=int(setting["threads"]))  # fmt: skip
    stage.setup()
    seconds = []
    for batch in batches:
        works = [Work(item=VideoItem(url=f"bench:{i}", source="bench"), frames=f) for i, f in enumerate(batch)]
        start = time.perf_counter()
        stage.process_batch(works)
        if setting["device"].startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def main(report: Report, args) -> None:
    if _IMPORT_ERROR is not None:
        report.not_measured("embed stage / bare model", f"processing.stages.embed: {_IMPORT_ERROR}", ">= 0.9x")
        return
    n_videos = args.videos or (24 if args.quick else 96)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        workdir = Path(tmp)
        model = args.model
        if model == "clip-vit-b32-random":
            model = build_random_clip(workdir / "model")
        elif model == "default":
            import settings

            model = settings.EMBED_MODEL
        report.figure("model", args.model if model.startswith("clip:") and args.model != "default" else model)
        report.figure("videos", n_videos)
        sampler = GpuSampler()
        records, wall, summary, missing = run_pipeline(model, n_videos, workdir, timeout=args.timeout)
        if missing:
            report.note(f"stages not in the checkout yet, passed through in this run: {', '.join(missing)}")
        util = sampler.stop()
        if util:
            report.figure("gpu_util_mean_pct", float(np.mean(util)))
            report.figure("gpu_util_max_pct", float(np.max(util)))
        report.figure("pipeline_wall_seconds", wall)
        report.figure("pipeline_summary", summary)
        records = [r for r in records if r["frames"] > 0]
        if not records:
            report.not_measured("embed stage in pipeline / bare model", "the stage embedded no frames", ">= 0.9x")
            return
        bare, setting, batches = bare_model(records, repeat=3 if args.quick else 5)
        alone = stage_alone(setting, batches)
        report.figure("setting", setting)
        steady = slice(1, None) if len(records) > 1 else slice(None)
        if len(records) == 1:
            report.note("one batch only: the stage's figure includes its first-call warm-up "
                        "(the bare model is warmed up); queue more videos for a steady state")
        frames = sum(r["frames"] for r in records[steady])
        stage_fps = frames / sum(r["seconds"] for r in records[steady])
        bare_fps = frames / sum(bare[steady])
        report.figure("batches", len(records))
        report.figure("frames_embedded", sum(r["frames"] for r in records))
        report.figure("stage_fps_first_batch", records[0]["frames"] / records[0]["seconds"])
        report.figure("stage_fps_steady", stage_fps)
        report.figure("bare_fps_steady", bare_fps)
        report.figure("stage_alone_fps_steady", frames / sum(alone[steady]))
        report.figure("pipeline_videos_per_s", n_videos / wall)
        ratio = stage_fps / bare_fps
        images = sum(r.get("images", r["frames"]) for r in records[steady])
        passes = images / frames
        report.target("embed stage frames/s (in pipeline)", stage_fps, bare_fps, ">= 0.9x baseline",
                      ratio >= 0.9, unit="frames/s",
                      note=f"ratio {ratio:.2f}; {setting['device']} {setting['precision']} "
                           f"batch {setting['batch_size']} threads {setting['threads']}")  # fmt: skip
        report.target("embed stage / bare model, per frame", ratio, 1.0, ">= 0.9", ratio >= 0.9, unit="x",
                      note=f"the stage runs the model {passes:g}x per frame (colour + gray copy for dedup)"
                      if passes > 1 else "")  # fmt: skip
        if passes > 1:
            per_image = ratio * passes
            report.target("embed stage / bare model, per model image", per_image, 1.0, ">= 0.9",
                          per_image >= 0.9, unit="x", note="stage overhead and contention only")


def _extra(parser) -> None:
    parser.add_argument("--model", default="default",
                        help="'default' (settings.EMBED_MODEL), 'clip-vit-b32-random', or a spec "
                             "the project accepts (efficientnet-lite0, clip:<folder>)")  # fmt: skip
    parser.add_argument("--videos", type=int, default=0, help="videos to queue (default 24 quick, 96)")
    parser.add_argument("--timeout", type=float, default=540.0, help="seconds for the pipeline run")


if __name__ == "__main__":
    run(main, "embed", __doc__.splitlines()[0], extra=_extra)
