"""The observation input of the image baselines (BC, Diffusion Policy) and the trainer defaults they share.

Both read the 8 tactile frames (left t0..t3, right t0..t3) stacked along the channel axis, 24 channels,
each frame resized to `image_size` (h, w). Unlike the 3x3 composite this keeps every frame at full cell
resolution, wastes no pixels on the white 9th cell, and puts the same gel pixel of all 4 timesteps and
both pads at the same spatial location, so the first convolution can take temporal differences directly.
`input_format="composite"` (3 channels, `tla.sim.compose`) is available for an exact like-for-like
comparison with TLA's input.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from tla.sim.compose import NUM_FRAMES, make_composite

ACTION_DIM = 3  # (dx mm, dy mm, drz deg)


def in_channels(input_format: str) -> int:
    return 3 * NUM_FRAMES if input_format == "stack" else 3


def preprocess(
    observations: np.ndarray, image_size: tuple[int, int], input_format: str = "stack"
) -> torch.Tensor:
    """uint8 (B, 8, H, W, 3) -> float32 (B, C, h, w) in [-1, 1]; C = 24 ("stack") or 3 ("composite")."""
    obs = np.asarray(observations)
    if obs.ndim != 5 or obs.shape[1] != NUM_FRAMES or obs.shape[-1] != 3 or obs.dtype != np.uint8:
        raise ValueError(f"observations must be uint8 (B, 8, H, W, 3); got {obs.dtype} {obs.shape}")
    h, w = image_size
    if input_format == "composite":
        comp = np.stack([make_composite(o, (h, w)) for o in obs])  # (B, h, w, 3)
        x = torch.from_numpy(comp).permute(0, 3, 1, 2).float()
    elif input_format == "stack":
        if obs.shape[2:4] != (h, w):  # cv2 area resize on uint8: ~3x faster than torch on float
            interp = cv2.INTER_AREA if h <= obs.shape[2] and w <= obs.shape[3] else cv2.INTER_LINEAR
            obs = np.stack([[cv2.resize(f, (w, h), interpolation=interp) for f in o] for o in obs])
        b, n = obs.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(obs)).permute(0, 1, 4, 2, 3).reshape(b, n * 3, h, w).float()
    else:
        raise ValueError(f"input_format must be 'stack' or 'composite', got {input_format!r}")
    return x / 127.5 - 1.0


class ImagePolicy:
    """What BC and DP share: the stacked-frame batch and the action normaliser fitted on training items
    (mixed into a TrainablePolicy that has `config.image_size`, `config.input_format`, `normalizer`)."""

    def collate(self, items: list[dict]) -> dict:
        return collate_items(items, self.config.image_size, self.config.input_format)

    def fit_normalizer(self, items: list[dict]) -> None:
        self.normalizer.fit(item_actions(items))


def tiny_train_overrides(split: str, weight_decay: float) -> list[str]:
    """Trainer defaults of the tiny baselines: batch 32, lr 1e-3, 6 epochs single-peg / 4 multi-peg
    (~1000 steps on the tiny dataset's 6k / 8k training samples, as `tla reproduce --preset tiny`)."""
    epochs = 6 if split.startswith("sp") else 4
    return ["batch_size=32", "grad_accum=1", "lr=1e-3", f"weight_decay={weight_decay}", f"epochs={epochs}"]


def item_actions(items) -> np.ndarray:
    """(N, 3) action labels; uses the dataset's image-free `actions` when it has one (no frame decoding)."""
    try:
        actions = getattr(items, "actions", None)
        actions = actions() if callable(actions) else actions
    except (IndexError, KeyError, TypeError):  # a dataset whose `actions` is something else
        actions = None
    if actions is not None and len(actions) == len(items):
        return np.asarray(actions, np.float32).reshape(-1, ACTION_DIM)
    return np.stack([np.asarray(it["action"], np.float32) for it in items])


def collate_items(items: list[dict], image_size, input_format) -> dict:
    """Dataset items -> {"obs": float (B, C, h, w), "action": float (B, 3) in mm/mm/deg}."""
    frames = np.stack([np.asarray(it["frames"]) for it in items])
    actions = np.stack([np.asarray(it["action"], np.float32) for it in items])
    return {"obs": preprocess(frames, image_size, input_format), "action": torch.from_numpy(actions)}
