"""Label quality: precision / recall of each default labeler on a labelled set, and what each costs.

The set (``bench/labelset.py``, built once with ffmpeg and espeak-ng, cached under
bench/results/labels_set) holds the tests/data clips and made ones: burnt-in text, speech,
speech-free music, tones and noise, faces, plain screens, still photos, each with what a
person sees and hears in it. Every clip goes through the project's own stages as the
workers build them (``from_config`` on the settings' config: frames -> embed -> labels with
``settings.LABELERS``), in batches of ``PROCESSING_BATCH_SIZE``.

Scores, per labeler, over the clips whose truth is known:
- ``ocr``: text present yes/no (precision, recall), and words: recall = expected words read,
  precision = words read that are on screen (case and punctuation ignored);
- ``speech``, ``faces``, ``nsfw``: present yes/no (the set has no NSFW clip: only false
  positives can be counted there);
- ``imagenet``: precision = tags that are among the classes accepted for the clip (on a plain
  screen every tag is wrong); recall = clips with accepted classes that get at least one.
Each labeler's time per video is measured around its own call (``LabelsStage.run_labeler``).
``--options '{"ocr": {"frames": 4}}'`` runs the labelers with other options, to compare.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import Report, run  # noqa: E402

BINARY = ("ocr", "speech", "faces", "nsfw")
TABLE = ["labeler", "precision", "recall", "TP", "FP", "FN", "TN", "ms/video", "wrong on"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def _truth(clip, name: str):
    return {"ocr": None if clip.text is None else bool(clip.text), "speech": clip.speech, "faces": clip.faces,
            "nsfw": clip.nsfw}[name]  # fmt: skip


def _pr(tp: int, fp: int, fn: int) -> tuple[float | None, float | None]:
    return (tp / (tp + fp) if tp + fp else None), (tp / (tp + fn) if tp + fn else None)


def score(clips, labels: dict[str, dict]) -> dict[str, dict]:
    """Per labeler: tp/fp/fn/tn, precision, recall and the clips it got wrong."""
    out: dict[str, dict] = {}
    for name in BINARY:
        counts, wrong = defaultdict(int), []
        for clip in clips:
            truth, got = _truth(clip, name), labels[clip.name].get(name, {})
            if truth is None or "present" not in got:
                continue
            kind = ("tp" if truth else "fp") if got["present"] else ("fn" if truth else "tn")
            counts[kind] += 1
            if kind in ("fp", "fn"):
                wrong.append(f"{clip.name} ({kind})")
        p, r = _pr(counts["tp"], counts["fp"], counts["fn"])
        out[name] = {"precision": p, "recall": r, **{k: counts[k] for k in ("tp", "fp", "fn", "tn")},
                     "wrong": wrong}  # fmt: skip
    # words read (OCR)
    found = expected = read = right = 0
    misread = []
    for clip in clips:
        got = labels[clip.name].get("ocr", {})
        if clip.text is None or "text" not in got:
            continue
        want, allowed, seen = set(words(clip.text)), set(words(clip.text_allowed)), words(got["text"])
        expected += len(want)
        found += len(want & set(seen))
        read += len(seen)
        right += sum(w in want or w in allowed for w in seen)
        bad = [w for w in seen if w not in want and w not in allowed]
        if bad:
            misread.append(f"{clip.name}: {' '.join(bad)[:40]}")
    out["ocr_words"] = {"precision": right / read if read else None, "recall": found / expected if expected else None,
                        "tp": right, "fp": read - right, "fn": expected - found, "tn": None, "wrong": misread}  # fmt: skip
    # ImageNet tags
    tags_right = tags_all = hit = scored = 0
    wrong = []
    for clip in clips:
        got = labels[clip.name].get("imagenet", {})
        if clip.tags is None or "tags" not in got:
            continue
        names = [t["name"] for t in got["tags"]]
        good = [n for n in names if n in clip.tags]
        tags_all += len(names)
        tags_right += len(good)
        if clip.tags:
            scored += 1
            hit += bool(good)
        bad = [n for n in names if n not in clip.tags]
        if bad:
            wrong.append(f"{clip.name}: {', '.join(bad)[:40]}")
    out["imagenet"] = {"precision": tags_right / tags_all if tags_all else None,
                       "recall": hit / scored if scored else None, "tp": tags_right, "fp": tags_all - tags_right,
                       "fn": scored - hit, "tn": None, "wrong": wrong}  # fmt: skip
    return out


def evaluate(clips, options: dict | None = None, labelers: tuple[str, ...] | None = None):
    """The clips through the project's stages; (labels per clip, seconds per labeler, config)."""
    from crawler.items import VideoItem
    from processing.config import ProcessingConfig
    from processing.pipeline import load_stage_class
    from processing.stages.labels import LabelsStage
    from processing.work import Work

    data_dir = Path(tempfile.mkdtemp(prefix="bench-labels-"))
    overrides = {"labelers": labelers} if labelers is not None else {}
    cfg = ProcessingConfig.from_settings(data_dir=data_dir, num_gpus=0, **overrides)
    stages = {n: load_stage_class(cfg.stages[n]).from_config(cfg) for n in ("frames", "embed")}
    labels_stage = LabelsStage.from_config(cfg, **({"options": options} if options else {}))
    for stage in (*stages.values(), labels_stage):
        stage.setup()
    seconds: dict[str, float] = defaultdict(float)
    original = labels_stage.run_labeler

    def timed(labeler, work):
        start = time.perf_counter()
        try:
            return original(labeler, work)
        finally:
            seconds[labeler.name] += time.perf_counter() - start

    labels_stage.run_labeler = timed
    out: dict[str, dict] = {}
    for start in range(0, len(clips), cfg.batch_size):
        batch = clips[start : start + cfg.batch_size]
        works = [Work(VideoItem(url=f"file://{c.path}", source="bench", path=str(c.path), video_id=c.name))
                 for c in batch]  # fmt: skip
        for stage in (*stages.values(), labels_stage):
            stage.process_batch(works)
        for clip, work in zip(batch, works):
            out[clip.name] = work.item.labels
    shutil.rmtree(data_dir, ignore_errors=True)  # thumbnails
    return out, dict(seconds), cfg


def table(scores: dict[str, dict], ms: dict[str, float]) -> str:
    from bench.common import render_table

    def f(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    rows = []
    for name, s in scores.items():
        base = name.split("_")[0]
        rows.append((name, f(s["precision"]), f(s["recall"]), f(s["tp"]), f(s["fp"]), f(s["fn"]), f(s["tn"]),
                     f"{ms[base]:.0f}" if base in ms and name == base else "", "; ".join(s["wrong"])[:90]))  # fmt: skip
    return render_table(TABLE, rows)


TARGETS = {  # labeler -> (precision, recall) goals
    "ocr": (0.9, 0.8), "ocr_words": (0.9, 0.7), "speech": (0.9, 0.8), "faces": (0.9, 0.8),
    "imagenet": (0.8, None), "nsfw": (None, None),
}  # fmt: skip


def main(report: Report, args) -> None:
    from bench.labelset import build_set, have_espeak

    clips = build_set(quick=args.quick)
    if not have_espeak():
        report.note("espeak-ng is not installed: the set has no speech clips (speech recall not measured)")
    options = json.loads(args.options) if args.options else None
    labels, seconds, cfg = evaluate(clips, options)
    scores = score(clips, labels)
    ms = {k: 1000 * v / len(clips) for k, v in seconds.items()}
    report.figure("clips", len(clips))
    report.figure("labelers", list(cfg.labelers))
    report.figure("ms_per_video", {k: round(v, 1) for k, v in ms.items()})
    report.figure("scores", scores)
    report.figure("labels", {c: {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in lab.items()}
                             for c, lab in labels.items()})  # fmt: skip
    for name, s in scores.items():
        p_goal, r_goal = TARGETS.get(name, (None, None))
        wrong = "; ".join(s["wrong"])[:200]
        if name == "nsfw":
            fp = s["fp"]
            report.target("nsfw false positives", fp, None, "= 0 (no NSFW clip in the set)", fp == 0,
                          note=f"{s['tn']} clips" + (f"; {wrong}" if wrong else ""))  # fmt: skip
            continue
        report.target(f"{name} precision", s["precision"], None, f">= {p_goal}" if p_goal else "(figure)",
                      None if p_goal is None or s["precision"] is None else s["precision"] >= p_goal,
                      note=wrong)  # fmt: skip
        report.target(f"{name} recall", s["recall"], None, f">= {r_goal}" if r_goal else "(figure)",
                      None if r_goal is None or s["recall"] is None else s["recall"] >= r_goal)  # fmt: skip
    total = sum(ms.values())
    report.target("labels ms per video (all labelers)", total, None, "(figure)", None, unit="ms",
                  note=", ".join(f"{k} {v:.0f}" for k, v in sorted(ms.items(), key=lambda x: -x[1])))  # fmt: skip
    print(table(scores, ms))


def _extra(parser) -> None:
    parser.add_argument("--options", default="", help='labeler options as JSON, e.g. {"ocr": {"frames": 4}}')


if __name__ == "__main__":
    run(main, "labels", __doc__.splitlines()[0], extra=_extra)
