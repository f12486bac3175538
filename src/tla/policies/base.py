"""The one interface every policy implements, so training, evaluation and serving treat them alike.

A policy declares the batch keys it reads (`input_features`, as LeRobot's policies declare their input
features) and maps a dict batch to actions (`predict(batch, **options)`, as diffusion_policy's
`predict_action(obs_dict)`). The keys:

- `observation` uint8 (B, 8, H, W, 3): the tactile frames of `tla.sim.compose`, left pad t0..t3 then
  right pad t0..t3, in the policy's modality and observation spec;
- `shape` list[str] of length B: the peg shape names;
- `state.error` float (B, 3) mm/mm/deg and `state.clearance` float (B,) mm: privileged state, the
  simulator's true pose error and clearance. Only the simulator's closed loop has them; a dataset
  evaluation or a robot does not, so a learned policy never declares them.

Evaluators build the batch with `batch_for`, which passes a policy only the keys it declares (a learned
policy never sees the true error). Actions are (dx, dy, drz) in mm, mm, degrees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tla.sim.compose import NUM_FRAMES

OBSERVATION = "observation"
SHAPE = "shape"
ERROR = "state.error"
CLEARANCE = "state.clearance"
PRIVILEGED = (ERROR, CLEARANCE)  # the simulator's true state: never in a dataset batch or a robot request

# what each key holds, as the error messages state it
EXPECTED = {
    OBSERVATION: "uint8 (B, 8, H, W, 3), the tactile frames (left pad t0..t3, right pad t0..t3)",
    SHAPE: "list[str] of length B, the peg shape names",
    ERROR: "(B, 3) mm/mm/deg, the privileged true pose error",
    CLEARANCE: "(B,) mm, the privileged clearance",
}


@dataclass
class Prediction:
    """What a policy returns for a batch: actions (B, 3) in mm/mm/deg, plus per-sample extras."""

    actions: np.ndarray
    texts: list[str] | None = None  # raw generated text (TLA); None for regression policies
    parse_ok: np.ndarray | None = None  # (B,) bool; False where the text did not parse (fallback used)
    extras: dict = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """The policy contract.

    `name`: "tla", "bc", "dp", "oracle", ...
    `input_features`: the batch keys `predict` reads (a subset of OBSERVATION, SHAPE, ERROR, CLEARANCE).
    """

    name: str
    input_features: tuple[str, ...]

    def predict(self, batch: Mapping[str, Any], **options) -> Prediction:
        """Map a batch to actions. The batch holds (at least) the declared keys, B rows each:

        - `observation`: uint8 (B, 8, H, W, 3), left pad t0..t3 then right pad t0..t3, in the policy's
          modality and observation spec;
        - `shape`: list[str] of length B;
        - `state.error`: float (B, 3) mm/mm/deg (privileged: the simulator's true pose error);
        - `state.clearance`: float (B,) mm (privileged).

        `options` are policy-specific inference settings (TLA: `num_beams`, `decode`). An implementation
        calls `check_batch(self, batch)` first. Returns a `Prediction` with actions (B, 3) in mm/mm/deg.
        """
        ...

    def save(self, directory: str | Path) -> None:
        """Write everything needed to reload this policy with `load_policy(directory)` alone."""
        ...


class TrainablePolicy:
    """A learned policy as the shared trainer (`tla.train`) sees it.

    Dataset items (from `tla.data.dataset.TactileDataset`) are dicts with at least: `frames` uint8
    (8, H, W, 3), `shape` str, `clearance` float, `error` float32 (3,), `action` float32 (3,) in
    mm/mm/deg, `instruction` str, `answer` str. The trainer never looks inside them; the policy does.

    At inference it is a `Policy` that reads the observation and the peg shape only (`input_features`):
    `predict(batch, **options)` calls `check_batch(self, batch)`, then maps `batch["observation"]` uint8
    (B, 8, H, W, 3) and `batch["shape"]` (B names) to actions (B, 3), the same `frames`/`shape` a dataset
    item holds (never its `error`: that is the privileged state a learned policy must not see).

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
    input_features: tuple[str, ...] = (OBSERVATION, SHAPE)
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

    def predict(self, batch: Mapping[str, Any], **options) -> Prediction:
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> "TrainablePolicy":
        raise NotImplementedError


def policy_modality(policy) -> str:
    """The modality whose observations `policy.predict` expects (rgb for policies that do not say)."""
    return getattr(policy, "modality", "rgb")


def policy_name(policy) -> str:
    """The name the error messages give `policy`."""
    return getattr(policy, "name", None) or type(policy).__name__


def policy_features(policy) -> tuple[str, ...]:
    """The batch keys `policy` declares (`input_features`); a TypeError naming it when it declares none."""
    features = getattr(policy, "input_features", None)
    if features is None or isinstance(features, str):
        raise TypeError(f"the {policy_name(policy)} policy declares no input_features tuple "
                        "(see tla.policies.base.Policy)")
    unknown = [k for k in features if k not in EXPECTED]
    if unknown:
        raise TypeError(f"the {policy_name(policy)} policy declares unknown features {unknown}; "
                        f"known: {list(EXPECTED)}")
    return tuple(features)


def make_batch(observations, shapes, errors=None, clearances=None) -> dict[str, Any]:
    """A batch from arrays: observations uint8 (B, 8, H, W, 3) or one (8, H, W, 3), shapes B names (or one
    name), privileged errors (B, 3) or one (3,) and clearances (B,) or one number; None is left out."""
    batch: dict[str, Any] = {}
    if observations is not None:
        obs = np.asarray(observations)
        batch[OBSERVATION] = obs[None] if obs.ndim == 4 else obs
    if shapes is not None:
        batch[SHAPE] = [shapes] if isinstance(shapes, str) else list(shapes)
    if errors is not None:
        err = np.asarray(errors, dtype=float)
        batch[ERROR] = err[None] if err.shape == (3,) else err
    if clearances is not None:
        batch[CLEARANCE] = np.atleast_1d(np.asarray(clearances, dtype=float))
    return batch


def _problem(key: str, value) -> tuple[Any, str | None]:
    """(the value as the policy reads it, what is wrong with it or None)."""
    if key == SHAPE:
        if isinstance(value, str) or not isinstance(value, (Sequence, np.ndarray)):
            return value, f"a {type(value).__name__}"
        names = list(value)
        return names, None if all(isinstance(s, str) for s in names) else "entries that are not strings"
    try:
        arr = np.asarray(value) if key == OBSERVATION else np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return value, f"a {type(value).__name__} that is not an array"
    if key == OBSERVATION:
        ok = arr.ndim == 5 and arr.shape[1] == NUM_FRAMES and arr.shape[-1] == 3
        dtype_ok = arr.dtype == np.uint8
        return arr, (f"shape {arr.shape}" if not ok else None if dtype_ok else f"dtype {arr.dtype}")
    ok = (arr.ndim == 2 and arr.shape[1] == 3) if key == ERROR else arr.ndim == 1
    return arr, (f"shape {arr.shape}" if not ok else None if np.isfinite(arr).all() else "non-finite values")


def check_batch(policy, batch: Mapping[str, Any]) -> dict[str, Any]:
    """The features `policy` declares, read from `batch`: each present, well formed and with the same leading
    size B; a ValueError of one line naming the policy, the key and what is expected otherwise. Returns them
    (observation, state.* as numpy arrays, shape as a list), the undeclared keys dropped."""
    name = policy_name(policy)
    if not isinstance(batch, Mapping):
        raise TypeError(f"the {name} policy predicts from a batch dict (tla.policies.base.make_batch); "
                        f"got a {type(batch).__name__}")
    out: dict[str, Any] = {}
    for key in policy_features(policy):
        expected = f"the {name} policy reads {key!r} {EXPECTED[key]}"
        if batch.get(key) is None:
            source = ": it is given by the simulator's closed loop, not by a dataset or a robot"
            raise ValueError(f"{expected}; this batch has none{source if key in PRIVILEGED else ''}")
        value, problem = _problem(key, batch[key])
        if problem is not None:
            raise ValueError(f"{expected}; got {problem}")
        first = next(iter(out), None)
        if first is not None and len(value) != len(out[first]):
            raise ValueError(f"{expected}; got {len(value)} where {first!r} has B = {len(out[first])}")
        out[key] = value
    return out


def batch_for(policy, observations, shapes, errors=None, clearances=None) -> dict[str, Any]:
    """The checked batch `policy` reads, built from what the caller has: only the features it declares, so a
    learned policy never receives the true error even where the caller (the simulator's closed loop) has it.
    A declared privileged feature that is not given fails as in `check_batch`."""
    full = make_batch(observations, shapes, errors, clearances)
    return check_batch(policy, {k: full[k] for k in policy_features(policy) if k in full})
