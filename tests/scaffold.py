"""Test scaffolding shared by the policy tests and the baseline benchmark: learnable synthetic items and a
minimal training loop (kept out of the package: it is not part of what users run)."""

from __future__ import annotations

import numpy as np
import torch


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


BC_SMALL = ["image_size=[24,32]", "embedding_size=8", "hidden_sizes=[8,8,8,8]", "head_hidden=16"]


def small_bc_run(root, train_overrides: list[str]):
    """The smoke dataset built in root/data and a 2-step, few-parameter BC run on its sp_train in root/run
    (read as marker flow, the BC preset's modality): (data, run)."""
    from tla.data.build import build
    from tla.data.config import preset
    from tla.train.cli import train_run

    data, run = root / "data", root / "run"
    build(preset("smoke"), data, progress=False)
    train_run(data=data, out=run, policy="bc", split="sp_train", preset="tiny", max_steps=2, resume=False,
              overrides=[*BC_SMALL, *train_overrides])
    return data, run
