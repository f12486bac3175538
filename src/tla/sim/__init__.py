"""Tactile peg-in-hole simulator: geometry, quasi-static mechanics, gel rendering, labels, Gym env."""

from tla.sim.config import SimConfig
from tla.sim.geometry import OOD_SHAPES, SHAPES, TRAIN_SHAPES, UnknownShapeError, inserts
from tla.sim.labels import action_label, sample_initial_error
from tla.sim.simulator import AttemptResult, simulate_attempt, simulate_batch

__all__ = [
    "SimConfig", "SHAPES", "TRAIN_SHAPES", "OOD_SHAPES", "UnknownShapeError", "inserts", "action_label",
    "sample_initial_error", "AttemptResult", "simulate_attempt", "simulate_batch",
]

import gymnasium as _gym

if "TLA/PegInHole-v0" not in _gym.registry:
    # The env truncates itself after `max_attempts` attempts, the first made by reset(): max_attempts - 1
    # steps. TimeLimit says the same (LeRobot reads it as the rollout length); with another
    # `sim_config.max_attempts`, pass `max_episode_steps=max_attempts - 1` to gym.make as well.
    _gym.register(id="TLA/PegInHole-v0", entry_point="tla.sim.env:PegInHoleEnv",
                  max_episode_steps=SimConfig().max_attempts - 1)
