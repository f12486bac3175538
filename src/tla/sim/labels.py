"""Action labels from the pose error (paper eq. 1-3) and initial-error sampling.

Paper mode: each translation moves the peg just inside the +-c/2 band (not to zero error), capped at
delta per action; rotation goes toward zero, capped at rz_cap. "center" mode (an option, never the
default) moves every axis toward zero error with the same caps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tla.sim.config import ErrorConfig, LabelConfig


def _axis_label(e: np.ndarray, half_clearance: float, delta: float, mode: str) -> np.ndarray:
    if mode == "center":
        return np.clip(-e, -delta, delta)
    return np.where(
        e >= 0,
        np.clip(-e + half_clearance, -delta, 0.0),
        np.clip(-e - half_clearance, 0.0, delta),
    )


def action_label(error, clearance: float, cfg: LabelConfig = LabelConfig()) -> np.ndarray:
    """(dx, dy, drz) in mm/mm/deg for pose error(s) (ex, ey, erz); works on (3,) or (N, 3)."""
    if cfg.mode not in ("paper", "center"):
        raise ValueError(f"unknown label mode {cfg.mode!r}; use 'paper' or 'center'")
    e = np.asarray(error, dtype=np.float64)
    c2 = np.asarray(clearance, dtype=np.float64) / 2.0
    dx = _axis_label(e[..., 0], c2, cfg.delta, cfg.mode)
    dy = _axis_label(e[..., 1], c2, cfg.delta, cfg.mode)
    drz = np.clip(-e[..., 2], -cfg.rz_cap, cfg.rz_cap)
    return np.stack([dx, dy, drz], axis=-1) + 0.0  # + 0.0 turns -0.0 into 0.0


def sample_initial_error(rng: np.random.Generator, cfg: ErrorConfig = ErrorConfig()) -> np.ndarray:
    """ex, ey ~ U[-ex, ex] mm, erz ~ U[-erz, erz] degrees."""
    lim = np.array([cfg.ex, cfg.ey, cfg.erz])
    return rng.uniform(-lim, lim)


def draw_colliding_error(rng: np.random.Generator, cfg: ErrorConfig, collides: Callable[[np.ndarray], bool],
                         tries: int = 10_000, what: str = "") -> np.ndarray:
    """The first initial error (`sample_initial_error`) whose attempt collides, so every episode starts in
    contact and gives at least one sample: the one rule of the env's reset and the dataset build."""
    for _ in range(tries):
        error = sample_initial_error(rng, cfg)
        if collides(error):
            return error
    raise ValueError(f"no colliding start in {tries} draws{f' ({what})' if what else ''}: the clearance exceeds "
                     f"the misalignment ranges ({cfg.ex} mm, {cfg.ey} mm, {cfg.erz} deg); widen `errors`")
