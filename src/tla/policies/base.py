"""The one interface every policy implements, so training, evaluation and serving treat them alike.

An observation is the uint8 array (8, H, W, 3) of `tla.sim.compose` (left t0..t3, right t0..t3); a batch
of observations is (B, 8, H, W, 3). Actions are (dx, dy, drz) in mm, mm, degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Prediction:
    """What a policy returns for a batch: actions (B, 3) in mm/mm/deg, plus per-sample extras."""

    actions: np.ndarray
    texts: list[str] | None = None  # raw generated text (TLA); None for regression policies
    parse_ok: np.ndarray | None = None  # (B,) bool; False where the text did not parse (fallback used)
    extras: dict = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    name: str  # "tla", "bc", "dp", "oracle", ...

    def predict(self, observations: np.ndarray, shapes: list[str]) -> Prediction:
        """Map a batch of tactile observations (B, 8, H, W, 3) uint8 and peg shapes to actions."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write everything needed to reload this policy with `load_policy(directory)` alone."""
        ...
