"""Pieces shared by the regression baselines (BC, Diffusion Policy): action normaliser, frame
preprocessing, EMA, checkpoint files.

Observation input for both baselines: the 8 tactile frames (left t0..t3, right t0..t3) stacked along the
channel axis, 24 channels, each frame resized to `image_size` (h, w). Unlike the 3x3 composite this keeps
every frame at full cell resolution, wastes no pixels on the white 9th cell, and puts the same gel pixel
of all 4 timesteps and both pads at the same spatial location, so the first convolution can take
temporal differences directly. `input_format="composite"` (3 channels, `tla.sim.compose`) is available
for an exact like-for-like comparison with TLA's input.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from tla.sim.compose import NUM_FRAMES, make_composite

ACTION_DIM = 3  # (dx mm, dy mm, drz deg)


# ---------------------------------------------------------------------------------------------- inputs
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


# ------------------------------------------------------------------------------------------ normaliser
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


# ------------------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of a module's weights (Chi et al.'s schedule: warm-up, power 0.75).

    decay(step) = clamp(1 - (1 + step / inv_gamma) ** -power, min_value, max_value); 0 for the first step.
    `model` is the averaged copy used for evaluation; buffers are copied from the live module.
    """

    def __init__(
        self, module: torch.nn.Module, power: float = 0.75, max_value: float = 0.9999, inv_gamma=1.0
    ):
        self.model = copy.deepcopy(module).eval().requires_grad_(False)
        self.power, self.max_value, self.inv_gamma = power, max_value, inv_gamma
        self.step = 0

    def decay(self) -> float:
        value = 1 - (1 + self.step / self.inv_gamma) ** -self.power
        return 0.0 if self.step <= 0 else float(min(max(value, 0.0), self.max_value))

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = self.decay()
        device = next(module.parameters()).device
        if next(self.model.parameters()).device != device:  # follow the live model (accelerate moves it)
            self.model.to(device)
        for e, p in zip(self.model.parameters(), module.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(self.model.buffers(), module.buffers()):
            e.copy_(b)
        self.step += 1

    def state_dict(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])


# ---------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(directory, name: str, config: dict, normalizer: ActionNormalizer, weights: dict) -> None:
    """Write policy.json (policy name + resolved config, as the registry expects), normalizer.json and one safetensors per entry."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "policy.json").write_text(json.dumps({"policy": name, "config": config}, indent=2, sort_keys=True))
    (d / "normalizer.json").write_text(json.dumps(normalizer.to_dict(), indent=2))
    for fname, state in weights.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()}, str(d / f"{fname}.safetensors")
        )


def read_checkpoint(directory, name: str) -> tuple[dict, ActionNormalizer]:
    d = Path(directory)
    meta = json.loads((d / "policy.json").read_text())
    if meta.get("policy") != name:
        raise ValueError(f"{d} holds a {meta.get('policy')!r} checkpoint, not {name!r}")
    return meta["config"], ActionNormalizer.from_dict(json.loads((d / "normalizer.json").read_text()))


def load_weights(directory, fname: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / f"{fname}.safetensors"))


# ------------------------------------------------------------------ synthetic data (tests, benchmarks)
def synthetic_items(n: int, seed: int = 0, hw: tuple[int, int] = (48, 64)) -> list[dict]:
    """Learnable stand-in for tactile items: the intensity of colour channel c in the right third of every
    frame encodes axis c of the action; black and white stripes anchor it (survives per-sample norms)."""
    rng = np.random.default_rng(seed)
    items = []
    w3 = hw[1] // 3
    for i in range(n):
        u = rng.uniform(-1, 1, 3).astype(np.float32)
        action = u * np.array([1.0, 1.0, 1.5], np.float32)  # mm, mm, deg
        frames = np.zeros((8, *hw, 3), np.float32)
        frames[:, :, w3 : 2 * w3] = 255
        frames[:, :, 2 * w3 :] = 128 + 100 * u
        frames = np.clip(frames + rng.normal(0, 4, frames.shape), 0, 255).astype(np.uint8)
        items.append(
            {
                "frames": frames,
                "shape": "square",
                "clearance": 2.0,
                "error": -action,
                "action": action,
                "instruction": "",
                "answer": "",
                "episode_index": i,
                "attempt_index": 0,
                "sample_seed": i,
            }
        )
    return items


def train_steps(policy, items: list[dict], steps: int, lr: float = 3e-3, batch_size: int = 16, seed: int = 0):
    """A minimal stand-in for the shared trainer: AdamW over `policy.model`, returns the loss history."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(policy.model.parameters(), lr=lr, weight_decay=0.0)
    policy.model.train()
    losses = []
    for s in range(steps):
        idx = [(s * batch_size + k) % len(items) for k in range(batch_size)]
        loss, _ = policy.loss(policy.model, policy.collate([items[j] for j in idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_optimizer_step()
        losses.append(float(loss.detach()))
    return losses, opt
