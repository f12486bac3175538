"""The observation layout shared by every policy: 8 tactile frames and their 3x3 composite.

Frame order (axis 0 of an observation, length 8): left pad t0, t1, t2, t3, then right pad t0..t3
(`frame_index(pad, t) = 4 * pad + t`, pad 0 = left = +y, pad 1 = right = -y). The composite tiles them
row-major into a 3x3 grid, the 9th (bottom-right) cell white:

    L0 L1 L2
    L3 R0 R1
    R2 R3 --
"""

from __future__ import annotations

import cv2
import numpy as np

NUM_PADS = 2
NUM_STEPS = 4
NUM_FRAMES = NUM_PADS * NUM_STEPS
PAD_NAMES = ("left", "right")


def frame_index(pad: int, t: int) -> int:
    return NUM_STEPS * pad + t


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate an observation: uint8 array (8, H, W, 3). Raises ValueError naming the problem."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] != NUM_FRAMES or frames.shape[-1] != 3:
        raise ValueError(
            f"tactile observation must have shape (8, H, W, 3) (left t0..t3, right t0..t3, RGB); "
            f"got {frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(f"tactile frames must be uint8 RGB, got dtype {frames.dtype}")
    return frames


def make_composite(frames: np.ndarray, size: int | tuple[int, int] = 616) -> np.ndarray:
    """Tile 8 frames into the 3x3 composite (uint8, size x size x 3; 9th cell white).

    Each cell is resized to size // 3 (area interpolation); the leftover pixels of `size` are added as a
    white margin on the right/bottom, so the output is exactly the requested size.
    """
    frames = check_frames(frames)
    h_out, w_out = (size, size) if isinstance(size, int) else size
    ch, cw = h_out // 3, w_out // 3
    out = np.full((h_out, w_out, 3), 255, dtype=np.uint8)
    for i in range(NUM_FRAMES):
        r, c = divmod(i, 3)
        out[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = cv2.resize(
            frames[i], (cw, ch), interpolation=cv2.INTER_AREA
        )
    return out
