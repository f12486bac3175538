"""Closed-loop success during training: a few fixed-seed episodes in the simulator of the training data.

This lives in `tla.train`, not `tla.eval`: eval sits above train (it loads trained runs), so train builds on
the environment (`tla.sim`, below both) directly. The episode loop is the one of
`tla.eval.closed_loop.run_episode`, run in-process on the live policy. The episodes are validation episodes:
their seeds come from a stream of their own (`ROLLOUT_STREAM`), not from `tla eval`'s episode seeds, so a
checkpoint chosen by `rollout_success` (`train.best_metric`) is never chosen on the test episodes.
"""

from __future__ import annotations

import numpy as np
import torch

from tla.policies.base import batch_for, policy_modality


def _column(dataset, name: str, indices: np.ndarray) -> np.ndarray:
    """One scalar column over `indices`, read without decoding images when the dataset allows it."""
    scalars = getattr(dataset, "_scalars", None)  # TactileDataset reads its scalar columns once
    if isinstance(scalars, dict) and name in scalars:
        return np.asarray(scalars[name])[indices]
    return np.asarray([dataset[int(i)][name] for i in indices])


def rollout_conditions(dataset, indices) -> list[tuple[str, float]]:
    """The (shape, clearance) conditions the policy trains on, sorted."""
    indices = np.asarray(indices)
    pairs = zip(_column(dataset, "shape", indices), _column(dataset, "clearance", indices))
    return sorted({(str(s), float(c)) for s, c in pairs})


ROLLOUT_STREAM = 1  # spawn key of the rollout seeds: tla eval draws SeedSequence(seed) itself, without one


def episode_plan(conditions: list[tuple[str, float]], episodes: int, seed: int) -> list[tuple]:
    """`episodes` (shape, clearance, seed) triples: fixed seeds of the rollout stream, the conditions taken in
    turn."""
    seeds = np.random.SeedSequence(seed, spawn_key=(ROLLOUT_STREAM,)).generate_state(episodes, dtype=np.uint32)
    return [(*conditions[i % len(conditions)], int(s)) for i, s in enumerate(seeds)]


def run_episode(env, policy, shape: str, clearance: float, seed: int) -> tuple[bool, int]:
    """(inserted, attempts) of one episode."""
    obs, info = env.reset(seed=seed, options={"shape": shape, "clearance": clearance})
    while True:
        batch = batch_for(policy, obs[None], [shape], errors=[info["error"]], clearances=[clearance])
        action = policy.predict(batch).actions[0]
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return bool(terminated), int(info["attempts"])


def rollout(policy, sim_config: dict, plan: list[tuple[str, float, int]]) -> dict:
    """Success rate and mean attempts of `plan` in the simulator `sim_config` (a SimConfig dict)."""
    from tla.config import from_dict
    from tla.sim.config import SimConfig
    from tla.sim.env import PegInHoleEnv

    env = PegInHoleEnv(from_dict(SimConfig, sim_config), modality=policy_modality(policy))
    model = policy.model
    was_training = model.training
    model.eval()
    # a forked torch RNG: sampling policies (DP) draw noise, and rollouts must not move the training run
    devices = range(torch.cuda.device_count()) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            results = [run_episode(env, policy, shape, c, seed) for shape, c, seed in plan]
    finally:
        model.train(was_training)
    return {
        "rollout_success": float(np.mean([ok for ok, _ in results])),
        "rollout_attempts": float(np.mean([n for _, n in results])),
        "rollout_episodes": len(results),
    }
