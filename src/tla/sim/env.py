"""Gymnasium environment: closed-loop peg insertion by touch (id `TLA/PegInHole-v0`).

reset() draws a misalignment whose first attempt collides and returns that attempt's tactile
observation (8 frames, left t0..t3 then right t0..t3, in the env's `modality`: camera `rgb` by default,
or `marker_flow` / `depth` rendered as images, see `tla.sim.modality`). step((dx, dy, drz)) moves the peg by the action
(mm, mm, deg) and makes the next attempt: terminated on insertion (reward 1), truncated after
`max_attempts` attempts in all (`max_attempts - 1` steps, the registered `max_episode_steps`). `info`
carries the true pose error, the label, the attempt count, `is_success` (True exactly when the peg is
inserted) and `task_description` (the language instruction for the peg shape, `tla.data.text.instruction`;
also the env attributes `task_description` and `task`, as LeRobot's gym envs expose them).
Every attempt draws its randomness from a Generator seeded by (episode seed, attempt index), so an
episode replays exactly from `reset(seed=...)`.

`obs_type` picks the observation layout (the frames are the same in each):
  - `frames` (default): one uint8 Box (8, H, W, 3), frames in the order above;
  - `pixels`: LeRobot's gym-env layout, `{"pixels": {"left_t0": (H, W, 3), ..., "right_t3": ...}}`, which
    LeRobot's `preprocess_observation` maps to `observation.images.left_t0` etc.;
  - `pixels_environment_state`: `pixels` plus `environment_state`, the TRUE pose error (ex mm, ey mm,
    erz deg) as float32 (3,). This is privileged simulator state (a real robot does not know it), for
    state-based baselines and debugging, never for a tactile policy. There is no `agent_pos`: the peg's
    pose relative to the hole is the only state, and it is exactly what the policy must infer by touch.
"""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from tla.sim import geometry as geo
from tla.sim.compose import make_composite
from tla.sim.config import SimConfig
from tla.sim.labels import action_label, draw_colliding_error
from tla.sim.modality import check_modality
from tla.sim.modality import observe as observe_modality
from tla.sim.observation import ObservationSpec
from tla.sim.perturb import actuation_active, actuation_noise
from tla.sim.simulator import simulate_attempt
from tla.sim.task import instruction

ACTION_LIMIT = np.array([3.0, 3.0, 6.0], dtype=np.float32)  # mm, mm, deg: well beyond any label
OBS_TYPES = ("frames", "pixels", "pixels_environment_state")


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
        obs_type: str = "frames",
    ):
        self.cfg = sim_config or SimConfig()
        self.shape = geo.check_shape(shape)
        self.clearance = float(clearance)
        self.observe = observe  # False: skip rendering (zeros), for state-based policies and fast tests
        self.render_mode = render_mode
        self.modality = check_modality(modality)  # what the observation shows (tla.sim.modality)
        self.observation_spec = ObservationSpec.of_sim(self.cfg, self.modality)
        self.obs_type = _check_obs_type(obs_type)
        self.observation_space = _observation_space(self.observation_spec, self.obs_type)
        self.action_space = spaces.Box(-ACTION_LIMIT, ACTION_LIMIT, dtype=np.float32)
        self._error = np.zeros(3)
        self._attempts = 0
        self._episode_seed = 0
        self._frames = self._blank_frames()

    @property
    def task_description(self) -> str:
        """The language instruction for the current peg shape (LeRobot's `task_description`)."""
        return instruction(self.shape)

    @property
    def task(self) -> str:
        """LeRobot's other task attribute: the same instruction (a LeRobot dataset's `task` is the prompt)."""
        return self.task_description

    # -- helpers -------------------------------------------------------------------------------------
    def _collides(self, error: np.ndarray, shape: str | None = None, clearance: float | None = None) -> bool:
        """Whether an attempt at `error` collides (default: with the env's current shape and clearance)."""
        shape, clearance = shape or self.shape, self.clearance if clearance is None else clearance
        return geo.collides(shape, clearance, error, self.cfg.geometry)

    def _blank_frames(self) -> np.ndarray:
        """All-zero frames: what an insertion (no contact) or `observe=False` shows."""
        return np.zeros(self.observation_spec.shape, np.uint8)

    def _attempt(self) -> bool:
        """Make one attempt at the current error; returns True on insertion."""
        rng = np.random.default_rng([self._episode_seed, self._attempts])
        self._attempts += 1
        if not self.observe:  # geometry decides the outcome; no mechanics or images needed
            self._frames = self._blank_frames()
            return not self._collides(self._error)
        res = simulate_attempt(self.cfg, self.shape, self.clearance, self._error, rng)
        if res.inserted:
            self._frames = self._blank_frames()
        else:
            self._frames = observe_modality(res, self.cfg.render, self.modality)
        return res.inserted

    def _observation(self):
        """The last attempt's frames in the layout of `obs_type` (exactly `observation_space`)."""
        if self.obs_type == "frames":
            return self._frames
        obs = {"pixels": dict(zip(self.observation_spec.frame_names, self._frames))}
        if self.obs_type == "pixels_environment_state":
            obs["environment_state"] = self._error.astype(np.float32)  # privileged: the true pose error
        return obs

    def _info(self, inserted: bool) -> dict:
        return {
            "error": self._error.copy(),
            "label": action_label(self._error, self.clearance, self.cfg.labels),
            "attempts": self._attempts,
            "inserted": inserted,
            "is_success": bool(inserted),  # the Gymnasium / LeRobot success key
            "shape": self.shape,
            "clearance": self.clearance,
            "task_description": self.task_description,
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
            self._error = draw_colliding_error(self.np_random, self.cfg.errors, self._collides,
                                               what=f"{shape}, clearance {clearance} mm")
        self._attempts = 0
        inserted = self._attempt()
        assert not inserted
        return self._observation(), self._info(False)

    def step(self, action):
        action = np.clip(_finite_vector(action, "action (dx mm, dy mm, drz deg)"), -ACTION_LIMIT, ACTION_LIMIT)
        # actuation noise (`sim_config.perturb.action_std`, off by default): the motion executed is the command
        # plus a draw from the substream of the coming attempt's Generator, so the episode still replays
        executed = action
        if actuation_active(self.cfg.perturb):
            executed = action + actuation_noise(self.cfg.perturb, np.random.default_rng([self._episode_seed, self._attempts]))
        self._error = self._error + executed
        inserted = self._attempt()
        terminated = bool(inserted)
        truncated = bool(not inserted and self._attempts >= self.cfg.max_attempts)
        info = self._info(inserted)
        info["executed_action"] = executed  # what moved the peg: the (clipped) action plus any actuation noise
        return self._observation(), float(inserted), terminated, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            return make_composite(self._frames, 616)
        return None


def _check_obs_type(obs_type: str) -> str:
    """`obs_type` itself, or a ValueError listing the choices."""
    if obs_type not in OBS_TYPES:
        raise ValueError(f"unknown obs_type {obs_type!r}; use one of {', '.join(OBS_TYPES)}")
    return obs_type


def _observation_space(spec: ObservationSpec, obs_type: str) -> spaces.Space:
    """The space of one observation: the frames Box, or LeRobot's `pixels` Dict (one image per frame name)."""
    if obs_type == "frames":
        return spaces.Box(0, 255, spec.shape, np.uint8)
    images = {name: spaces.Box(0, 255, spec.shape[1:], np.uint8) for name in spec.frame_names}
    space = {"pixels": spaces.Dict(images)}
    if obs_type == "pixels_environment_state":  # unbounded: actions accumulate, a start error may be given
        space["environment_state"] = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    return spaces.Dict(space)


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


ENV_ID = "TLA/PegInHole-v0"
if ENV_ID not in gym.registry:
    # The env truncates itself after `max_attempts` attempts, the first made by reset(): max_attempts - 1
    # steps. TimeLimit says the same (LeRobot reads it as the rollout length); with another
    # `sim_config.max_attempts`, pass `max_episode_steps=max_attempts - 1` to gym.make as well.
    gym.register(id=ENV_ID, entry_point="tla.sim.env:PegInHoleEnv", max_episode_steps=SimConfig().max_attempts - 1)
