"""Stages as the workers build them (``from_config`` on the config from settings), made once per session."""

import pytest

from crawler.items import VideoItem
from processing.config import ProcessingConfig
from processing.stages.embed import EmbedStage
from processing.stages.frames import FramesStage
from processing.work import Work


def work_for(path, video_id=None) -> Work:
    return Work(VideoItem(url=f"file://{path}", source="test", path=str(path), video_id=video_id or path.stem))


@pytest.fixture(scope="session")
def stage_cfg(tmp_path_factory) -> ProcessingConfig:
    """The worker config from settings, on the CPU, with a data dir of its own."""
    return ProcessingConfig.from_settings(data_dir=tmp_path_factory.mktemp("data"), num_gpus=0)


@pytest.fixture(scope="session")
def frames_stage(stage_cfg):
    stage = FramesStage.from_config(stage_cfg)
    stage.setup()
    return stage


@pytest.fixture(scope="session")
def embed_stage(stage_cfg):
    stage = EmbedStage.from_config(stage_cfg)
    stage.setup()
    return stage
