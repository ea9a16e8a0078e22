"""The writer on a real catalogue and Redis: documents, demoted videos of earlier batches, ledger, stage totals."""

import numpy as np

from crawler.items import VideoItem
from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from processing.config import ProcessingConfig
from processing.runtime.progress import project_status
from processing.runtime.writer import CatalogueWriter
from processing.work import Demotion, Work, WorkBatch


def _work(n: int, **kw) -> Work:
    item = VideoItem(url=f"https://example.org/{n}.mp4", source="web", video_id=f"v{n}", status="queued", **kw)
    return Work(item, descriptor=np.full(4, 0.5, np.float32))


def test_a_better_copy_demotes_the_kept_video_of_an_earlier_batch(redis_client, key_prefix, data_dir):
    cfg = ProcessingConfig.from_settings(num_gpus=0)
    cat = SqliteCatalogue(data_dir / "c.sqlite")
    writer = CatalogueWriter(cat, redis_client, cfg.keys)
    first = WorkBatch([_work(1), _work(2)], stats={"neardup": {"kept": 2, "videos": 2, "seconds": 0.5}})
    assert writer.write(first) == {"indexed": 2}

    better = _work(3)
    better.updates.append(Demotion("v1", duplicate_of="v3", similarity=0.93))  # v3 beats the kept v1
    copy = _work(4)
    copy.item.status, copy.item.duplicate_of, copy.item.similarity = "duplicate", "v2", 0.88
    second = WorkBatch([better, copy], stats={"neardup": {"kept_better": 1, "duplicate": 1, "videos": 2,
                                                          "seconds": 0.25}})  # fmt: skip
    assert writer.write(second) == {"indexed": 1, "duplicate": 1}

    assert cat.get("v1")["status"] == "duplicate" and cat.get("v1")["duplicate_of"] == "v3"
    assert cat.get("v1")["similarity"] == 0.93 and cat.get("v3")["status"] == "indexed"
    assert cat.get("v3")["vector"] == [0.5] * 4 and cat.get("v3")["processed_at"]
    assert cat.counts() == {"indexed": 2, "duplicate": 2}
    ledger = Ledger(redis_client, cfg.keys)
    assert ledger.get("https://example.org/1.mp4")["status"] == "duplicate"
    assert ledger.counts() == {"indexed": 2, "duplicate": 2}
    st = project_status(redis_client, cfg)
    assert st["stages"]["neardup"] == {"kept": 2, "kept_better": 1, "duplicate": 1, "videos": 4, "seconds": 0.75,
                                       "seconds_per_video": 0.1875}  # fmt: skip


def test_a_demotion_inside_the_same_batch_is_applied_before_writing(redis_client, key_prefix, data_dir):
    cfg = ProcessingConfig.from_settings(num_gpus=0)
    cat = SqliteCatalogue(data_dir / "c.sqlite")
    kept, better = _work(1), _work(2)
    better.updates.append(Demotion("v1", duplicate_of="v2", similarity=0.9))
    counts = CatalogueWriter(cat, redis_client, cfg.keys).write(WorkBatch([kept, better]))
    assert counts == {"duplicate": 1, "indexed": 1}
    assert (cat.get("v1")["status"], cat.get("v1")["duplicate_of"]) == ("duplicate", "v2")
