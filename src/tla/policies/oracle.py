"""The oracle: a privileged policy that reads the true pose error and applies its label.

With the paper's labels (eq. 1-3) a peg whose error is inside the +-c/2 box on every axis gets a zero
action. For the square that box is inside the real tolerance region, but a round, triangular or
hexagonal peg can still collide there (its tolerance region is not the box). When the paper label is
zero on every axis yet the attempt failed, the oracle falls back to the "center" label (toward zero
error, same caps), so it never stalls. `fallback=False` applies the paper's label alone: what a policy
that reproduced its training labels exactly would do, so its closed loop is the ceiling of pure imitation
(it stalls wherever a non-square peg collides inside the box).

It reads the privileged features `state.error` and `state.clearance` (`tla.policies.base.PRIVILEGED`) and the
peg shape, no observation: only the simulator's closed loop can run it (`batch_for` passes it the true state),
and the server refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from tla.policies.base import CLEARANCE, ERROR, SHAPE, Prediction, check_batch
from tla.sim.config import LabelConfig
from tla.sim.labels import action_label


class OraclePolicy:
    name = "oracle"
    input_features = (SHAPE, ERROR, CLEARANCE)

    def __init__(self, labels: LabelConfig = LabelConfig(), stall_tol: float = 1e-6, fallback: bool = True):
        self.labels = labels
        self.center = replace(labels, mode="center")
        self.stall_tol = stall_tol
        self.fallback = fallback

    def act(self, error, clearance: float) -> np.ndarray:
        a = action_label(error, clearance, self.labels)
        if self.fallback and np.all(np.abs(a) <= self.stall_tol):
            a = action_label(error, clearance, self.center)
        return a

    def predict(self, batch: Mapping[str, Any]) -> Prediction:
        """batch: `state.error` (B, 3) mm/mm/deg, `state.clearance` (B,) mm, `shape` B names -> actions
        (B, 3) mm/mm/deg."""
        batch = check_batch(self, batch)
        actions = np.array([self.act(e, c) for e, c in zip(batch[ERROR], batch[CLEARANCE])]).reshape(-1, 3)
        return Prediction(actions=actions)

    def save(self, directory) -> None:  # nothing to save: the oracle has no parameters
        return None
