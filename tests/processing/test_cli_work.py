"""``work``'s own choices as flags (--dedup-method, --phash-threshold, --embedding-threshold), and
what it says at start when an opt-in labeler has no model."""

import subprocess

import numpy as np
import pytest

from crawler.items import VideoItem
from processing.cli import _config, build_parser
from processing.stages.neardup import NearDupStage
from processing.work import Work
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import vid


def config(*argv):
    args = build_parser().parse_args(["work", *argv, "--num-gpus", "0"])
    return _config(args)


def test_flags_reach_the_near_dup_stage_and_the_environment_still_works(monkeypatch, tmp_path):
    import settings

    cfg = config("--dedup-method", "phash", "--phash-threshold", "6", "--embedding-threshold", "0.9")
    assert (cfg.dedup_method, cfg.phash_max_distance, cfg.neardup_threshold) == ("phash", 6, 0.9)
    stage = NearDupStage.from_config(cfg)
    assert (stage.method, stage.phash_max_distance, stage.frame_threshold) == ("phash", 6, 0.9)
    monkeypatch.setattr(settings, "DEDUP_METHOD", "embedding")
    monkeypatch.setattr(settings, "PHASH_MAX_DISTANCE", 12)
    cfg = config()
    assert (cfg.dedup_method, cfg.phash_max_distance) == ("embedding", 12)
    assert config("--dedup-method", "both").dedup_method == "both"  # a flag beats the environment
    with pytest.raises(ValueError, match="must be a number of bits"):
        config("--phash-threshold", "65")
    with pytest.raises(ValueError, match="neardup_threshold must be in"):
        config("--embedding-threshold", "1.5")


@pytest.mark.parametrize("labeler, setting", [("caption", "CAPTION_MODEL"), ("clip_tags", "CLIP_MODEL"),
                                               ("transcript", "ASR_MODEL")])  # fmt: skip
def test_an_opt_in_labeler_without_a_model_stops_work_at_start_in_one_sentence(labeler, setting, data_dir):
    env = project_env(LABELERS=f"imagenet,{labeler}", **{setting: ""}, REDIS_URL="redis://127.0.0.1:1/0")
    proc = subprocess.run([PYTHON, "-m", "processing", "work", "--until-empty"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {labeler} needs a") and setting in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""  # before Ray, before Redis


def test_dedup_method_phash_decides_by_the_hash_alone_and_embedding_ignores_it(tmp_path):
    vecs = np.eye(4, dtype=np.float32)

    def work(name, row, phash):
        item = VideoItem(url=f"https://e.org/{name}.mp4", source="web", video_id=vid(name), phash=phash)
        item.embedding_model = "m"
        return Work(item, embeddings=vecs[row : row + 1].repeat(2, axis=0))

    # b: other frames, a hash 1 bit from a's (the hash alone calls it a copy; "both" asks the
    # frames to confirm, and they do not); c: a's frames, a hash far from a's
    for method, pair in (("phash", {"a", "b"}), ("embedding", {"a", "c"}), ("both", {"a", "c"})):
        stage = NearDupStage(index_dir=tmp_path / method, frame_threshold=0.9, min_match=0.5, approx_threshold=1000,
                             phash_max_distance=4, flush_seconds=0, method=method)  # fmt: skip
        stage.setup()
        works = {n: work(n, row, h) for n, row, h in (("a", 0, "0" * 16), ("b", 1, "0" * 15 + "1"), ("c", 0, "f" * 16))}
        stage.process_batch(list(works.values()))
        dups = {n for n, w in works.items() if w.item.status == "duplicate"}
        assert len(dups) == 1 and dups < pair, (method, {n: w.item.status for n, w in works.items()})
        [dup] = dups
        assert works[dup].item.duplicate_of == vid(next(iter(pair - dups)))  # the other one of the pair
    with pytest.raises(ValueError, match="dedup method must be one of both, phash, embedding"):
        NearDupStage(index_dir=tmp_path, frame_threshold=0.9, min_match=0.5, approx_threshold=10,
                     phash_max_distance=4, method="clip")  # fmt: skip
