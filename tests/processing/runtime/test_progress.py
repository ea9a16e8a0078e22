"""Project status on a real Redis (ledger, stream, rates, stage totals) and the progress line."""

import io
import json

from crawler.items import VideoItem
from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.runtime.progress import Progress, RateBook, StageTotals, format_status, project_status
from processing.runtime.stream import WorkStream


def _item(n: int) -> VideoItem:
    return VideoItem(url=f"https://example.org/{n}.mp4", source="web", video_id=f"{n:064x}", status="queued")


def test_status_counts_the_whole_project(redis_client, key_prefix, data_dir):
    cfg = ProcessingConfig.from_settings(num_gpus=0)
    s = WorkStream.from_config(redis_client, cfg, consumer="w")
    s.ensure_group()
    ledger = Ledger(redis_client, cfg.keys)
    for i in range(4):
        ledger.record_item(_item(i))
        redis_client.xadd(s.key, {"item": _item(i).to_json()})
    s.read(1)  # one in progress, three waiting
    redis_client.xadd(s.key, {"item": "bad"})  # waiting too, until read
    ledger.record("https://example.org/r.mp4", "rejected", stage="probe", error="too_long")
    ledger.record("https://example.org/x.mp4", "indexed", video_id="x")
    RateBook(redis_client, cfg.keys).add({"indexed": 6})
    st = project_status(redis_client, cfg, catalogue=SqliteCatalogue(data_dir / "c.sqlite"))
    assert (st["queued"], st["in_progress"], st["backlog"]) == (4, 1, 4)
    assert (st["indexed"], st["rejected"], st["failed"], st["dead_lettered"]) == (1, 1, 0, 0)
    assert st["stream"]["key"] == f"{key_prefix}:videos"
    assert st["rates_per_minute"]["last_1m"] == {"indexed": 6.0}
    assert st["catalogue"] == {} and st["stages"] == {}
    text = format_status(st)
    assert "in progress 1" in text and "rejected" in text
    json.dumps(st)  # --json must be able to print it


def test_stage_counters_of_every_batch_add_up_in_status(redis_client, key_prefix):
    cfg = ProcessingConfig.from_settings(num_gpus=0)
    totals = StageTotals(redis_client, cfg.keys)
    # what two batches brought from the stages (WorkBatch.stats), in any order of stages
    totals.add({"neardup": {"kept": 2, "duplicate": 1, "match_embedding": 1, "videos": 3, "seconds": 0.3},
                "frames": {"ok": 3, "undecodable": 1, "videos": 4, "seconds": 2.0}})  # fmt: skip
    totals.add({"frames": {"ok": 2, "videos": 2, "seconds": 1.0}, "labels": {}})
    st = project_status(redis_client, cfg)
    assert list(st["stages"]) == ["frames", "neardup"]  # the pipeline's order
    assert st["stages"]["frames"] == {"ok": 5, "undecodable": 1, "videos": 6, "seconds": 3.0,
                                      "seconds_per_video": 0.5}  # fmt: skip
    assert st["stages"]["neardup"]["duplicate"] == 1 and st["stages"]["neardup"]["kept"] == 2
    text = format_status(st)
    assert "stage frames  6 videos in 3 s (0.5 s/video): ok 5, undecodable 1" in text
    assert redis_client.hget(cfg.keys.stage_stats, "frames:ok") == b"5"


def test_progress_shows_done_rate_and_eta():
    out = io.StringIO()
    p = Progress(lambda: 30, out=out, tty=True, poll_s=0)
    p.add({"indexed": 8, "failed": 2})
    p.close()
    line = out.getvalue()
    assert line.startswith("\r") and "done 10/40" in line and "indexed 8" in line
    assert "/min" in line and "ETA 00:00:" in line and line.endswith("\n")
