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


class TrainablePolicy:
    """A learned policy as the shared trainer (`tla.train`) sees it.

    Dataset items (from `tla.data.dataset.TactileDataset`) are dicts with at least: `frames` uint8
    (8, H, W, 3), `shape` str, `clearance` float, `error` float32 (3,), `action` float32 (3,) in
    mm/mm/deg, `instruction` str, `answer` str. The trainer never looks inside them; the policy does.

    Contract:
    - `model`: the torch.nn.Module the trainer optimises (its parameters with requires_grad=True)
      and hands to `accelerate` (the prepared, possibly DDP-wrapped module is passed back to `loss`).
    - `collate(items)` -> dict of CPU tensors; `loss(model, batch)` -> (scalar loss, {metric: float}).
    - `fit_normalizer(items)` is called once with training items before training (statistics that must
      be stored with the checkpoint: action normalisation etc.).
    - `after_optimizer_step()` runs after every optimiser step (e.g. an EMA update).
    - `save(dir)` writes weights + resolved config + normaliser + anything needed to `load(dir)`;
      `extra_state()` / `load_extra_state()` carry non-parameter training state (e.g. EMA) for resume.
    """

    name: str = "policy"
    # what the policy was trained on, set by the trainer from its dataset and saved beside the weights
    # (`tla.policies.registry.save_policy`): the observation spec and the simulator config that rendered it
    observation_spec = None  # tla.sim.observation.ObservationSpec | None
    sim_config: dict | None = None

    @property
    def modality(self) -> str:
        """The tactile modality the policy reads (`tla.sim.modality`): its config's `modality`, else rgb."""
        cfg = getattr(self, "config", None) or getattr(self, "cfg", None)
        return getattr(cfg, "modality", "rgb")

    def collate(self, items: list[dict]) -> dict:
        raise NotImplementedError

    def loss(self, model, batch: dict):
        raise NotImplementedError

    def fit_normalizer(self, items: list[dict]) -> None:
        return None

    def after_optimizer_step(self) -> None:
        return None

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        return None

    def predict(self, observations: np.ndarray, shapes: list[str]) -> Prediction:
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> "TrainablePolicy":
        raise NotImplementedError


def policy_modality(policy) -> str:
    """The modality whose observations `policy.predict` expects (rgb for policies that do not say)."""
    return getattr(policy, "modality", "rgb")
