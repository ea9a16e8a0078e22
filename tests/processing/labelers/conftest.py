"""Clips made with ffmpeg (and espeak-ng) for the labeler tests, sampled by the real FramesStage."""

from __future__ import annotations

import numpy as np
import pytest

from bench import labelset
from crawler.items import VideoItem
from processing.stages.embed import EmbedStage
from processing.stages.frames import FramesStage
from processing.work import Work


@pytest.fixture(scope="session")
def sample():
    """``sample(path)``: a Work with the frames, audio and EfficientNet logits of a clip, as
    FramesStage and EmbedStage (default settings) give them to the labelers."""
    frames = FramesStage(frames_per_video=8)
    frames.setup()
    embed = EmbedStage(model="efficientnet-lite0", precision="auto", device="cpu")

    def _sample(path) -> Work:
        work = Work(VideoItem(url=f"file://{path}", source="test", path=str(path), video_id=path.stem))
        frames.process_batch([work])
        embed.process_batch([work])
        assert work.item.status == "new", work.item.errors
        return work

    return _sample


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Made once per session: plain screens, burnt-in text, music, speech (when espeak-ng exists)."""
    root = tmp_path_factory.mktemp("label-clips")
    pop = labelset.synth_music(6, "pop", seed=1)
    made = {
        "blue": labelset.make_clip(root / "blue.mp4", video="color=c=blue", seconds=4),
        "title": labelset.make_clip(root / "title.mp4", video="color=c=0x102040", size="1280x720", seconds=4,
                                    vf=labelset.drawtext("OPEN SOURCE VIDEO", 84)),  # fmt: skip
        "big_o": labelset.make_clip(root / "big_o.mp4", video="color=c=black", seconds=4,
                                    vf=labelset.drawtext("O", 150)),  # fmt: skip
        "music": labelset.make_clip(root / "music.mp4", video="color=c=black", seconds=6, audio=pop),
        "silent": labelset.make_clip(root / "silent.mp4", video="color=c=gray", seconds=4,
                                     audio=np.zeros(4 * labelset.RATE, np.float32)),  # fmt: skip
    }
    if labelset.have_espeak():
        wav = labelset.speak(root / "speech.wav", labelset.SENTENCES["en-us"])
        voice = labelset.resample(*labelset.read_wav(wav))
        made["speech"] = labelset.make_clip(root / "speech.mp4", video="color=c=navy", seconds=6,
                                            audio=labelset.fit_audio(voice, 6))  # fmt: skip
        made["speech_over_music"] = labelset.make_clip(
            root / "speech_over_music.mp4", video="color=c=navy", seconds=6,
            audio=labelset.fit_audio(voice, 6) + 0.35 * pop)  # fmt: skip
    return made
