"""The oracle: a privileged policy that reads the true pose error and applies its label.

With the paper's labels (eq. 1-3) a peg whose error is inside the +-c/2 box on every axis gets a zero
action. For the square that box is inside the real tolerance region, but a round, triangular or
hexagonal peg can still collide there (its tolerance region is not the box). When the paper label is
zero on every axis yet the attempt failed, the oracle falls back to the "center" label (toward zero
error, same caps), so it never stalls.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tla.policies.base import Prediction
from tla.sim.config import LabelConfig
from tla.sim.labels import action_label


class OraclePolicy:
    name = "oracle"
    uses_state = True  # the closed-loop evaluator passes the true errors and clearances

    def __init__(self, labels: LabelConfig = LabelConfig(), stall_tol: float = 1e-6):
        self.labels = labels
        self.center = replace(labels, mode="center")
        self.stall_tol = stall_tol

    def act(self, error, clearance: float) -> np.ndarray:
        a = action_label(error, clearance, self.labels)
        if np.all(np.abs(a) <= self.stall_tol):
            a = action_label(error, clearance, self.center)
        return a

    def predict(self, observations, shapes, errors=None, clearances=None) -> Prediction:
        if errors is None or clearances is None:
            raise ValueError("the oracle needs the true errors and clearances (it is a privileged policy)")
        actions = np.array([self.act(e, c) for e, c in zip(errors, clearances)])
        return Prediction(actions=actions)

    def save(self, directory) -> None:  # nothing to save: the oracle has no parameters
        return None
