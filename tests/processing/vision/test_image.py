"""Frame image ops: letterbox trimming, grayscale, frame picking."""

import numpy as np

from processing.vision.image import looks_gray, pick_frames, to_gray, trim_borders


def test_trim_borders_removes_letterbox_bars():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, 20:80, 10:190] = 128
    assert trim_borders(frames).shape == (2, 60, 180, 3)
    dark = np.zeros((2, 50, 50, 3), np.uint8)
    assert trim_borders(dark).shape == dark.shape


def test_gray_copies_look_gray_and_colour_does_not():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    gray = to_gray(colour)
    assert gray.shape == colour.shape and (gray[..., 0] == gray[..., 2]).all()
    assert looks_gray(gray) and not looks_gray(colour)


def test_pick_frames_takes_inner_frames_evenly():
    frames = np.arange(10).reshape(10, 1, 1, 1).repeat(3, axis=-1).astype(np.uint8)
    assert pick_frames(frames, 2)[:, 0, 0, 0].tolist() == [3, 6]
    assert len(pick_frames(frames, 20)) == 10 and len(pick_frames(None, 2)) == 0
