"""Simulator throughput: full 8-frame tactile sequences per second on one core."""

from __future__ import annotations

import statistics
import time

import numpy as np

from tla.sim import geometry as geo
from tla.sim.config import SimConfig
from tla.sim.labels import sample_initial_error
from tla.sim.simulator import simulate_attempt


def colliding_errors(cfg: SimConfig, shape: str, clearance: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    g = cfg.geometry
    while len(out) < n:
        e = sample_initial_error(rng, cfg.errors)
        if not geo.inserts(shape, clearance, e, g.peg_size, g.insert_area_tol, g.circle_segments):
            out.append(e)
    return np.array(out)


def sequences_per_second(cfg: SimConfig | None = None, n: int = 100, repeats: int = 5, shape: str = "square",
                         clearance: float = 2.0, seed: int = 0) -> dict:
    """Median over `repeats` runs of `n` colliding attempts (each a full 8-frame sequence), one process."""
    cfg = cfg or SimConfig()
    errors = colliding_errors(cfg, shape, clearance, n, seed)
    simulate_attempt(cfg, shape, clearance, errors[0], np.random.default_rng(0))  # warm caches
    rates, cpu_rates, physics_rates = [], [], []
    for rep in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i, e in enumerate(errors):
            simulate_attempt(cfg, shape, clearance, e, np.random.default_rng([seed, rep, i]))
        rates.append(n / (time.perf_counter() - t0))
        cpu_rates.append(n / (time.process_time() - c0))
        t0 = time.perf_counter()
        for i, e in enumerate(errors):
            simulate_attempt(cfg, shape, clearance, e, np.random.default_rng([seed, rep, i]), render=False)
        physics_rates.append(n / (time.perf_counter() - t0))
    return {
        "benchmark": "sim_throughput",
        "sequences_per_second_per_core": statistics.median(rates),
        "runs": rates,
        # CPU time of this process only: less inflated than wall time when other jobs share the cores
        "sequences_per_cpu_second": statistics.median(cpu_rates),
        "physics_only_per_second": statistics.median(physics_rates),
        "frames_per_sequence": 8,
        "resolution": [cfg.render.height, cfg.render.width],
        "shape": shape,
        "clearance": clearance,
        "attempts_per_run": n,
        "repeats": repeats,
    }
