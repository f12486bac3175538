"""Frame preprocessing a policy may apply to its tactile observation before its encoder sees it.

The paper feeds the raw frames. At CPU scale a small random-init vision tower cannot find the contact
in them (the tiny preset reads the marker-flow modality instead; these steps make rgb learnable too): the marker grid dominates every 14 px patch, and the per-attempt light gain moves the mean
brightness more than the contact shading does. Two optional steps, both recorded with the run:

- `demarker`: each frame is area-downsampled by `demarker_factor` and upsampled back. Blobs a few px wide
  average into their block: a marker grid whose pitch equals the factor becomes an even dip. At the tiny
  preset's 160 px width the pitch is ~8 px; factor 4 leaves a weak 2-block ripple, which the composite's
  further ~2x area resize (160 px -> 74 px cells) averages away. The contact shading (several mm wide)
  stays;
- `contrast`: the sample's mean brightness (over its 8 frames, per channel) is removed and the rest
  stretched, `clip((f - mean) * contrast_gain + 128)`, so the light gain no longer hides the contact.

`preprocess_frames` maps a uint8 observation (8, H, W, 3) to one of the same shape and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tla.sim.compose import check_frames


@dataclass
class FramePreprocess:
    demarker: bool = False
    demarker_factor: int = 4  # area-downsampling factor (px); the marker pitch in px erases them exactly
    contrast: bool = False
    contrast_gain: float = 3.0

    def validate(self) -> None:
        if self.demarker_factor < 1:
            raise ValueError(f"preprocess.demarker_factor must be >= 1, got {self.demarker_factor}")
        if not np.isfinite(self.contrast_gain) or self.contrast_gain <= 0:
            raise ValueError(f"preprocess.contrast_gain must be a positive number, got {self.contrast_gain}")

    @property
    def identity(self) -> bool:
        return not (self.demarker or self.contrast)


def remove_markers(frames: np.ndarray, factor: int) -> np.ndarray:
    """Area-downsample each frame by `factor`, then bilinear-upsample to its size: blobs smaller than
    `factor` px (the markers) average into their surroundings."""
    n, h, w, _ = frames.shape
    small = (max(1, round(w / factor)), max(1, round(h / factor)))  # cv2 sizes are (width, height)
    out = np.empty_like(frames)
    for i in range(n):
        out[i] = cv2.resize(cv2.resize(frames[i], small, interpolation=cv2.INTER_AREA), (w, h),
                            interpolation=cv2.INTER_LINEAR)
    return out


def stretch_contrast(frames: np.ndarray, gain: float) -> np.ndarray:
    """Remove the sample's per-channel mean (over all 8 frames and pixels) and stretch around grey 128."""
    f = frames.astype(np.float32)
    mean = f.mean(axis=(0, 1, 2), keepdims=True)
    return np.clip(np.rint((f - mean) * gain + 128.0), 0, 255).astype(np.uint8)


def preprocess_frames(frames: np.ndarray, cfg: FramePreprocess) -> np.ndarray:
    frames = check_frames(frames)
    if cfg.demarker and cfg.demarker_factor > 1:
        frames = remove_markers(frames, cfg.demarker_factor)
    if cfg.contrast:
        frames = stretch_contrast(frames, cfg.contrast_gain)
    return frames
