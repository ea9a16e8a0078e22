"""Image operations on a video's sampled frames ((N, H, W, 3) uint8 RGB arrays)."""

from __future__ import annotations

import numpy as np


def to_gray(frames: np.ndarray) -> np.ndarray:
    """Luma replicated to 3 channels (BT.601), so colour-changed and grayscale copies match."""
    luma = frames[..., 0] * 0.299 + frames[..., 1] * 0.587 + frames[..., 2] * 0.114
    return np.repeat(luma.round().astype(np.uint8)[..., None], 3, axis=-1)


def looks_gray(frames: np.ndarray, tolerance: int = 3) -> bool:
    """True when the frames carry no colour (channels within ``tolerance`` on a sparse grid)."""
    sample = frames[:, ::8, ::8].astype(np.int16)
    return bool(np.abs(sample[..., 0] - sample[..., 1]).max() <= tolerance
                and np.abs(sample[..., 1] - sample[..., 2]).max() <= tolerance)  # fmt: skip


def trim_borders(frames: np.ndarray, dark: int = 24, min_keep: float = 0.4) -> np.ndarray:
    """Cut letterbox / pillarbox bars: rows and columns that stay dark on every frame.

    The same box is applied to all frames of a video. If less than ``min_keep`` of a side
    would remain (a dark video), the frames are returned unchanged.
    """
    if frames.ndim != 4 or len(frames) == 0:
        return frames
    bright = frames.max(axis=(0, 3))  # (H, W): brightest value over frames and channels
    rows = np.flatnonzero(bright.max(axis=1) > dark)
    cols = np.flatnonzero(bright.max(axis=0) > dark)
    h, w = bright.shape
    if len(rows) == 0 or len(cols) == 0:
        return frames
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) < min_keep * h or (right - left) < min_keep * w:
        return frames
    if (top, bottom, left, right) == (0, h, 0, w):
        return frames
    return frames[:, top:bottom, left:right]


def pick_frames(frames: np.ndarray | None, n: int) -> np.ndarray:
    """``n`` evenly spaced frames (inner ones first: they avoid fades and title cards)."""
    if frames is None or len(frames) == 0:
        return np.zeros((0, 1, 1, 3), np.uint8)
    if len(frames) <= n:
        return frames
    idx = np.linspace(0, len(frames) - 1, n + 2)[1:-1].round().astype(int)
    return frames[idx]
