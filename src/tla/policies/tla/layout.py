"""Image layouts: how one tactile observation becomes the images and the text of the user turn.

A layout maps the 8 frames (8, H, W, 3) (left t0..t3, right t0..t3) to a `Layout`: the images the vision
tower sees, each a multiple of 28 px (patch 14 x merge 2), and the user turn's content list, in which
`{"type": "image"}` marks where each image's tokens go. The instruction text follows the content. A new
layout is one function here plus its name in `LAYOUTS`.

- `composite` (the paper's): one image, the 3x3 tiling of `tla.sim.compose.make_composite`.
- `frames`: the 8 frames as 8 images of `size` x `size` px, each introduced by a short text label
  ("left t0:"), so which pad and which instant a token belongs to is said in words, not only by its place
  in a mosaic.

Not here: Qwen2-VL's native video input (pairs of frames share one temporal patch). transformers' video
processor for Qwen2-VL needs torchvision; building the temporal patches by hand is possible (the image
path already produces t=2 patches by repeating each image) but is not done yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from tla.sim.compose import NUM_PADS, NUM_STEPS, PAD_NAMES, check_frames, frame_index, make_composite


@dataclass
class Layout:
    images: list[np.ndarray]  # uint8 (h, w, 3), h and w multiples of 28
    content: list[dict]  # the user turn before the instruction: {"type": "image"} / {"type": "text", "text"}


def composite(frames: np.ndarray, size: int) -> Layout:
    """One size x size image: L0 L1 L2 / L3 R0 R1 / R2 R3 -- (9th cell white)."""
    return Layout([make_composite(frames, size)], [{"type": "image"}])


def frame_label(pad: int, t: int) -> str:
    return f"{PAD_NAMES[pad]} t{t}:"


def separate_frames(frames: np.ndarray, size: int) -> Layout:
    """Eight size x size images, each after its label: "left t0:" <image> ... "right t3:" <image>."""
    frames = check_frames(frames)
    images, content = [], []
    for pad in range(NUM_PADS):
        for t in range(NUM_STEPS):
            f = frames[frame_index(pad, t)]
            interp = cv2.INTER_AREA if f.shape[0] >= size else cv2.INTER_LINEAR
            images.append(cv2.resize(f, (size, size), interpolation=interp))
            content += [{"type": "text", "text": frame_label(pad, t)}, {"type": "image"}]
    return Layout(images, content)


LAYOUTS: dict[str, Callable[[np.ndarray, int], Layout]] = {"composite": composite, "frames": separate_frames}
IMAGES_PER_OBSERVATION = {"composite": 1, "frames": NUM_PADS * NUM_STEPS}


def check_layout(name: str, size: int) -> str:
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; choose one of {sorted(LAYOUTS)}")
    if size % 28 or size <= 0:
        raise ValueError(f"the {name} layout's image size must be a positive multiple of 28 (patch 14 x "
                         f"merge 2), got {size}")
    return name
