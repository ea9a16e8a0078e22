"""Per-video deadlines for real: a decode and a labeler that hang for ever on one video each.

Real local Ray, real Redis, real clips made by FFmpeg; the stand-in stages of test_runner.py,
two of them swapped (as ``PROCESSING_STAGES`` would) for ones that really hang on one video:
the hung actor is killed and restarted, the hung video ends ``failed`` with code ``timeout``
at that stage, every other video of its batch is indexed, and the run ends in bounded time.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.runtime.progress import project_status
from processing.runtime.runner import Runner
from processing.runtime.stream import WorkStream
from tests.processing.runtime.test_runner import STAGES, TinyFrames, TinyLabels, _cfg, _item, _queue

HERE = "tests.processing.runtime.test_timeouts"
SOURCES = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc", "mandelbrot", "yuvtestsrc", "cellauto",
           "life", "smptehdbars", "pal75bars")  # FFmpeg's test patterns: clips that differ  # fmt: skip


def make_clips(root: Path, n: int) -> list[Path]:
    """``n`` distinct one-second 96x64 H.264 clips (FFmpeg test patterns, hues turned)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = root / f"clip{i:02d}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"{SOURCES[i % len(SOURCES)]}=size=96x64:rate=10", "-t", "1",
                        "-vf", f"hue=h={(i // len(SOURCES)) * 97}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        str(path)], check=True, timeout=60)  # fmt: skip
        paths.append(path)
    return paths


class HangingFrames(TinyFrames):
    """TinyFrames that never returns on a video titled ``hang-frames`` (a decoder stuck in C)."""

    def process_one(self, work):
        if work.item.title == "hang-frames":
            time.sleep(10**6)
        return super().process_one(work)


class HangingLabels(TinyLabels):
    """TinyLabels that never returns on a video titled ``hang-labels`` (a stuck labeler)."""

    def process_one(self, work):
        if work.item.title == "hang-labels":
            time.sleep(10**6)
        return super().process_one(work)




@pytest.mark.faults
@pytest.mark.slow
def test_a_hung_decode_and_a_hung_labeler_fail_their_video_as_timeout_and_the_batch_goes_on(
        ray_session, redis_client, key_prefix, data_dir):  # fmt: skip
    clips = make_clips(data_dir / "clips", 5)
    titles = ["ok", "hang-frames", "ok", "hang-labels", "ok"]  # batches: [0 1 2] [3 4]
    items = [_item(p, title=t) for p, t in zip(clips, titles)]
    for it in items:
        _queue(redis_client, it)
    stages = STAGES | {"frames": f"{HERE}:HangingFrames", "labels": f"{HERE}:HangingLabels"}
    cfg = _cfg(stages=stages, batch_size=3, step_timeout=4.0)
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")

    start = time.monotonic()
    stats = Runner(cfg, until_empty=True, client=redis_client, catalogue=cat).run()
    took = time.monotonic() - start

    # deadlines: 12 s for the first batch's frames, 4 s for the hung video alone; 8 s + 4 s
    # for the second batch's labels; plus four actor restarts
    assert took < 120, took
    assert stats.by_status == {"indexed": 3, "failed": 2}
    for it in (items[0], items[2], items[4]):
        doc = cat.get(it.video_id)
        assert doc["status"] == "indexed" and doc["labels"]["tiny"]["frames"] == 4, doc["errors"]
    hung_decode, hung_labels = cat.get(items[1].video_id), cat.get(items[3].video_id)
    assert hung_decode["status"] == hung_labels["status"] == "failed"
    assert list(hung_decode["errors"]) == ["frames"] and hung_decode["errors"]["frames"].startswith(
        "timeout: no result after 4 s")
    assert list(hung_labels["errors"]) == ["labels"] and hung_labels["errors"]["labels"].startswith("timeout")
    assert hung_labels["vector"], "the steps before labels were kept"
    ledger = Ledger(redis_client, key_prefix)
    assert ledger.get(items[1].url)["stage"] == "frames" and ledger.get(items[1].url)["error"].startswith("timeout")
    assert ledger.counts() == {"indexed": 3, "failed": 2}
    stages_seen = project_status(redis_client, cfg)["stages"]
    assert stages_seen["frames"]["timeout"] == stages_seen["labels"]["timeout"] == 1
    stream = WorkStream.from_config(redis_client, cfg, consumer="check")
    assert stream.pending_count() == 0 and stream.stats()["dead"] == 0  # a timeout is a result, not a retry
