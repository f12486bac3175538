"""Per-axis affine action normalisation for the regression baselines, saved with their checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from tla.policies.frames import ACTION_DIM


class ActionNormalizer:
    """Per-axis affine action normalisation, fitted on the training items and saved with the checkpoint.

    mode "meanstd": (a - mean) / std (BC regression target).
    mode "minmax":  maps [min, max] to [-1, 1] (Diffusion Policy: clip_sample works on [-1, 1]).
    """

    def __init__(self, mode: str = "meanstd", shift=None, scale=None):
        if mode not in ("meanstd", "minmax"):
            raise ValueError(f"normaliser mode must be 'meanstd' or 'minmax', got {mode!r}")
        self.mode = mode
        self.shift = np.zeros(ACTION_DIM, np.float32) if shift is None else np.asarray(shift, np.float32)
        self.scale = np.ones(ACTION_DIM, np.float32) if scale is None else np.asarray(scale, np.float32)

    def fit(self, actions: np.ndarray) -> ActionNormalizer:
        a = np.asarray(actions, np.float64).reshape(-1, ACTION_DIM)
        if self.mode == "meanstd":
            shift, scale = a.mean(0), a.std(0)
        else:
            lo, hi = a.min(0), a.max(0)
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
        self.shift = shift.astype(np.float32)
        self.scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)  # constant axis: identity scale
        return self

    def normalize(self, a: torch.Tensor) -> torch.Tensor:
        return (a - torch.as_tensor(self.shift, device=a.device)) / torch.as_tensor(
            self.scale, device=a.device
        )

    def unnormalize(self, a: torch.Tensor) -> torch.Tensor:
        return a * torch.as_tensor(self.scale, device=a.device) + torch.as_tensor(self.shift, device=a.device)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ActionNormalizer:
        return cls(d["mode"], d["shift"], d["scale"])
