"""Gymnasium environment: closed-loop peg insertion by touch (id `TLA/PegInHole-v0`).

reset() draws a misalignment whose first attempt collides and returns that attempt's tactile
observation (8 frames, left t0..t3 then right t0..t3, in the env's `modality`: camera `rgb` by default,
or `marker_flow` / `depth` rendered as images, see `tla.sim.modality`). step((dx, dy, drz)) moves the peg by the action
(mm, mm, deg) and makes the next attempt: terminated on insertion (reward 1), truncated after
`max_attempts` attempts in all. `info` carries the true pose error, the label and the attempt count.
Every attempt draws its randomness from a Generator seeded by (episode seed, attempt index), so an
episode replays exactly from `reset(seed=...)`.
"""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tla.sim import geometry as geo
from tla.sim.compose import make_composite
from tla.sim.config import SimConfig
from tla.sim.labels import action_label, sample_initial_error
from tla.sim.modality import check_modality
from tla.sim.modality import observe as observe_modality
from tla.sim.observation import ObservationSpec
from tla.sim.simulator import simulate_attempt

ACTION_LIMIT = np.array([3.0, 3.0, 6.0], dtype=np.float32)  # mm, mm, deg: well beyond any label


class PegInHoleEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        sim_config: SimConfig | None = None,
        shape: str = "square",
        clearance: float = 2.0,
        observe: bool = True,
        render_mode: str | None = None,
        modality: str = "rgb",
    ):
        self.cfg = sim_config or SimConfig()
        self.shape = geo.check_shape(shape)
        self.clearance = float(clearance)
        self.observe = observe  # False: skip rendering (zeros), for state-based policies and fast tests
        self.render_mode = render_mode
        self.modality = check_modality(modality)  # what the observation shows (tla.sim.modality)
        self.observation_spec = ObservationSpec.of_sim(self.cfg, self.modality)
        self.observation_space = spaces.Box(0, 255, self.observation_spec.shape, np.uint8)
        self.action_space = spaces.Box(-ACTION_LIMIT, ACTION_LIMIT, dtype=np.float32)
        self._error = np.zeros(3)
        self._attempts = 0
        self._episode_seed = 0
        self._obs = np.zeros(self.observation_space.shape, np.uint8)

    # -- helpers -------------------------------------------------------------------------------------
    def _collides(self, error: np.ndarray, shape: str | None = None, clearance: float | None = None) -> bool:
        """Whether an attempt at `error` collides (default: with the env's current shape and clearance)."""
        g = self.cfg.geometry
        shape, clearance = shape or self.shape, self.clearance if clearance is None else clearance
        return not geo.inserts(shape, clearance, error, g.peg_size, g.insert_area_tol, g.circle_segments)

    def _attempt(self) -> bool:
        """Make one attempt at the current error; returns True on insertion."""
        rng = np.random.default_rng([self._episode_seed, self._attempts])
        self._attempts += 1
        if not self.observe:  # geometry decides the outcome; no mechanics or images needed
            self._obs = np.zeros(self.observation_space.shape, np.uint8)
            return not self._collides(self._error)
        res = simulate_attempt(self.cfg, self.shape, self.clearance, self._error, rng)
        if res.inserted:
            self._obs = np.zeros(self.observation_space.shape, np.uint8)
        else:
            self._obs = observe_modality(res, self.cfg.render, self.modality)
        return res.inserted

    def _info(self, inserted: bool) -> dict:
        return {
            "error": self._error.copy(),
            "label": action_label(self._error, self.clearance, self.cfg.labels),
            "attempts": self._attempts,
            "inserted": inserted,
            "shape": self.shape,
            "clearance": self.clearance,
        }

    # -- gymnasium API -------------------------------------------------------------------------------
    def _checked_options(self, options: dict) -> tuple[str, float, np.ndarray | None]:
        """Validate every option before anything changes, so a rejected reset leaves the env as it was."""
        unknown = set(options) - {"shape", "clearance", "error"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; the options are shape, clearance, error")
        shape = geo.check_shape(options.get("shape", self.shape))
        clearance = geo.check_clearance(options.get("clearance", self.clearance))
        error = None
        if "error" in options:
            error = _finite_vector(options["error"], "start error (ex mm, ey mm, erz deg)")
        return shape, clearance, error

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        shape, clearance, error = self._checked_options(options or {})
        if error is not None and not self._collides(error, shape, clearance):
            raise ValueError(f"start error {error.tolist()} inserts at once; an episode starts colliding")
        super().reset(seed=seed)
        self.shape, self.clearance = shape, clearance
        self._episode_seed = int(self.np_random.integers(0, 2**63 - 1))
        if error is not None:  # a given start (it must collide)
            self._error = error.copy()
        else:
            for _ in range(10_000):
                self._error = sample_initial_error(self.np_random, self.cfg.errors)
                if self._collides(self._error):
                    break
            else:  # pragma: no cover - only with a clearance far larger than the error ranges
                raise RuntimeError("no colliding start found: the clearance exceeds the misalignment ranges")
        self._attempts = 0
        inserted = self._attempt()
        assert not inserted
        return self._obs, self._info(False)

    def step(self, action):
        action = np.clip(_finite_vector(action, "action (dx mm, dy mm, drz deg)"), -ACTION_LIMIT, ACTION_LIMIT)
        self._error = self._error + action
        inserted = self._attempt()
        terminated = bool(inserted)
        truncated = bool(not inserted and self._attempts >= self.cfg.max_attempts)
        return self._obs, float(inserted), terminated, truncated, self._info(inserted)

    def render(self):
        if self.render_mode == "rgb_array":
            return make_composite(self._obs, 616)
        return None


def _finite_vector(value, what: str) -> np.ndarray:
    """Three finite numbers, or a ValueError naming them (the env's state is not touched)."""
    try:
        v = np.asarray(value, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 3 numbers, got {value!r}") from None
    if not np.isfinite(v).all():
        raise ValueError(f"{what} must be finite, got {v.tolist()}")
    return v


def make_env(shape: str = "square", clearance: float = 2.0, **overrides) -> PegInHoleEnv:
    """Convenience constructor; `overrides` are SimConfig fields (e.g. max_attempts=10)."""
    cfg = replace(SimConfig(), **overrides) if overrides else SimConfig()
    return PegInHoleEnv(cfg, shape=shape, clearance=clearance)
