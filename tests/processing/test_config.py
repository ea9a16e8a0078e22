"""The worker config read from settings, and the one list of steps it names stage classes by."""

import pytest

import settings
from processing.config import ProcessingConfig
from processing.pipeline import load_stage_class, stage_targets
from processing.stages.neardup import NearDupStage


def test_config_comes_from_the_settings_in_use(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "KEY_PREFIX", "work7")
    monkeypatch.setattr(settings, "NEARDUP_THRESHOLD", 0.9)
    monkeypatch.setattr(settings, "LABELERS", "faces, ocr")
    monkeypatch.setattr(settings, "PROCESSING_STAGES", "neardup=tests.processing.test_config:Custom")
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=0)
    assert (cfg.keys.stream, cfg.keys.dead, cfg.keys.stage_stats) == (
        "work7:videos", "work7:videos:dead", "work7:processing:stages")
    assert cfg.labelers == ("faces", "ocr") and cfg.device == "cpu"
    assert cfg.stages["neardup"] == "tests.processing.test_config:Custom"
    assert cfg.stages["frames"] == "processing.stages.frames:FramesStage"
    stage = NearDupStage.from_config(cfg)  # what the near-dup actor builds
    assert (stage.frame_threshold, stage.min_match) == (0.9, settings.NEARDUP_MIN_MATCH)
    assert stage.phash_max_distance == settings.PHASH_MAX_DISTANCE and stage.index_dir == tmp_path / "index"


def test_bad_settings_say_what_is_wrong(monkeypatch):
    with pytest.raises(ValueError, match="KEY_PREFIX"):
        ProcessingConfig.from_settings(key_prefix="a:b", num_gpus=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ProcessingConfig.from_settings(batch_size=0, num_gpus=0)
    with pytest.raises(ValueError, match="PROCESSING_STAGES: expected name=module:Class"):
        stage_targets("decode=my.module:Frames")
    with pytest.raises(ValueError, match="cannot load stage"):
        load_stage_class("processing.stages.frames:NoSuchStage")
    with pytest.raises(ValueError, match="is not a processing.stages.base.Stage"):
        load_stage_class("processing.config:ProcessingConfig")
