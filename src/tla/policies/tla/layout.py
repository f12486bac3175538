"""Layouts: how one tactile observation becomes the images / videos and the text of the user turn.

A layout maps the 8 frames (8, H, W, 3) (left t0..t3, right t0..t3) to a `Layout`: the images and videos
the vision tower sees, each frame a multiple of 28 px (patch 14 x merge 2), and the user turn's content
list, in which `{"type": "image"}` / `{"type": "video"}` mark where each image's / video's tokens go. The
instruction text follows the content. A new layout is one function here plus its name in `LAYOUTS` and
its media count in `MEDIA_PER_OBSERVATION`.

- `composite` (the paper's): one image, the 3x3 tiling of `tla.sim.compose.make_composite`.
- `frames`: the 8 frames as 8 images of `size` x `size` px, each introduced by a short text label
  ("left t0:"), so which pad and which instant a token belongs to is said in words, not only by its place
  in a mosaic.
- `video`: the VLM's native video input, one video per pad of its 4 frames at `size` x `size` px, each
  introduced by a label ("left pad:"). Qwen2-VL cuts a video into temporal patches of 2 frames, so each pad
  is grid_t = 2 slices of patches and a token sees 2 instants (t0+t1, t2+t3); its temporal rotary position
  tells the slices apart. The adapter builds the video patches (no torchvision), and the position table
  works here too: one grid per (video, temporal slice).
- `pairs`: one video of the 8 frames in the order left t0, right t0, left t1, ..., right t3, each right
  frame mirrored left-right (the two cameras see mirror images), so each temporal patch holds the two pads at
  one instant and at the same position along the peg: a token compares the pads pixel by pixel, the way
  BC's stacked channels do (the twist shows as opposite shear on the two pads), and the temporal rotary
  position tells the 4 instants apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from tla.sim.compose import NUM_PADS, NUM_STEPS, PAD_NAMES, check_frames, frame_index, make_composite


@dataclass
class Layout:
    images: list[np.ndarray]  # uint8 (h, w, 3), h and w multiples of 28
    content: list[dict]  # the user turn before the instruction: {"type": "image" | "video" | "text"}
    videos: list[np.ndarray] = field(default_factory=list)  # uint8 (T, h, w, 3), in content order


def composite(frames: np.ndarray, size: int) -> Layout:
    """One size x size image: L0 L1 L2 / L3 R0 R1 / R2 R3 -- (9th cell white)."""
    return Layout([make_composite(frames, size)], [{"type": "image"}])


def frame_label(pad: int, t: int) -> str:
    return f"{PAD_NAMES[pad]} t{t}:"


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if frame.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(frame, (size, size), interpolation=interp)


def separate_frames(frames: np.ndarray, size: int) -> Layout:
    """Eight size x size images, each after its label: "left t0:" <image> ... "right t3:" <image>."""
    frames = check_frames(frames)
    images, content = [], []
    for pad in range(NUM_PADS):
        for t in range(NUM_STEPS):
            images.append(resize(frames[frame_index(pad, t)], size))
            content += [{"type": "text", "text": frame_label(pad, t)}, {"type": "image"}]
    return Layout(images, content)


def pad_videos(frames: np.ndarray, size: int) -> Layout:
    """Two videos of size x size frames t0..t3, each after its label: "left pad:" <video> "right pad:"
    <video>."""
    frames = check_frames(frames)
    videos, content = [], []
    for pad in range(NUM_PADS):
        videos.append(np.stack([resize(frames[frame_index(pad, t)], size) for t in range(NUM_STEPS)]))
        content += [{"type": "text", "text": f"{PAD_NAMES[pad]} pad:"}, {"type": "video"}]
    return Layout([], content, videos)


PAIRS_LABEL = "left and right pads, t0 to t3:"


def mirror_right(frame: np.ndarray, pad: int) -> np.ndarray:
    """The right pad's frame flipped left-right: the cameras face each other, so the two images of a press
    are mirror images, and flipped, one pixel column is one position along the peg in both pads."""
    return np.ascontiguousarray(frame[:, ::-1]) if PAD_NAMES[pad] == "right" else frame


def pad_pairs(frames: np.ndarray, size: int) -> Layout:
    """One video of size x size frames, the pads interleaved instant by instant (left t0, right t0, ...,
    right t3; each right frame mirrored left-right, `mirror_right`), after its label."""
    frames = check_frames(frames)
    video = np.stack([resize(mirror_right(frames[frame_index(pad, t)], pad), size) for t in range(NUM_STEPS)
                      for pad in range(NUM_PADS)])
    return Layout([], [{"type": "text", "text": PAIRS_LABEL}, {"type": "video"}], [video])


LAYOUTS: dict[str, Callable[[np.ndarray, int], Layout]] = {
    "composite": composite, "frames": separate_frames, "video": pad_videos, "pairs": pad_pairs,
}
# (images, videos, frames per video) per observation
MEDIA_PER_OBSERVATION = {"composite": (1, 0, 0), "frames": (NUM_PADS * NUM_STEPS, 0, 0),
                         "video": (0, NUM_PADS, NUM_STEPS), "pairs": (0, 1, NUM_PADS * NUM_STEPS)}


def check_layout(name: str, size: int) -> str:
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; choose one of {sorted(LAYOUTS)}")
    if size % 28 or size <= 0:
        raise ValueError(f"the {name} layout's image size must be a positive multiple of 28 (patch 14 x "
                         f"merge 2), got {size}")
    return name
