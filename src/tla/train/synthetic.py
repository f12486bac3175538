"""A synthetic stand-in for `TactileDataset` (tests, benchmarks): items with the same keys, whose label is
a deterministic function of the image, so a model can learn it."""

from __future__ import annotations

import numpy as np

from tla.data.text import encode_action, instruction


class SyntheticTactile:
    """`n` samples in `n_classes` actions; sample i shows frames of brightness 20 + 30*class (+ noise).
    Two attempts per episode, so the episode-disjoint validation split has something to respect."""

    def __init__(self, n: int = 32, n_classes: int = 8, size: tuple[int, int] = (48, 64), seed: int = 0):
        self.n, self.n_classes, self.size, self.seed = n, n_classes, size, seed
        rng = np.random.default_rng(seed)
        self.actions = np.round(rng.uniform([-1, -1, -1.5], [1, 1, 1.5], (n_classes, 3)), 2).astype(
            np.float32
        )
        self.episode_indices = np.arange(n) // 2

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        k = i % self.n_classes
        rng = np.random.default_rng([self.seed, i])
        frames = np.full((8, *self.size, 3), 20 + 30 * k, dtype=np.int16)
        frames[:, : self.size[0] // 2, :, k % 3] += 40  # a class-coloured band: the label is visible
        frames = np.clip(frames + rng.integers(-5, 6, frames.shape), 0, 255).astype(np.uint8)
        shape = ("square", "triangle")[i % 2]
        action = self.actions[k]
        return {
            "frames": frames,
            "shape": shape,
            "clearance": 2.0,
            "error": -action,
            "action": action,
            "instruction": instruction(shape),
            "answer": encode_action(action),
            "episode_index": int(self.episode_indices[i]),
            "attempt_index": i % 2,
            "sample_seed": i,
        }
