"""Closed-loop trials under harder conditions: the robustness table (one knob of `SimConfig.perturb` at a time)
and the `hard` protocol (fewer attempts, start errors up to the capped actions' reach, actuation noise).

Both run a trained run (or the oracle, `run=None`) on the simulator it was trained on, changed only by the
condition's overrides, over the same episode seeds as every other model; each output folder records the base
simulator config (run metadata) and every condition's full config (`conditions.json`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

from tla.config import apply_overrides, to_dict
from tla.experiments.tables import HARD_ACTION_STD, ROBUSTNESS
from tla.sim.config import ErrorConfig, SimConfig

HARD = "hard"  # the hard protocol's condition name in its records and summary rows


def robust_configs(base: SimConfig) -> dict[str, SimConfig]:
    """One simulator config per robustness knob (tables.ROBUSTNESS), each the base plus that knob."""
    return {key: apply_overrides(base, list(overrides)) for key, _, overrides in ROBUSTNESS}


def hard_sim_config(base: SimConfig, attempts: int = 5, action_std=HARD_ACTION_STD) -> SimConfig:
    """The hard protocol: `attempts` attempts in all, start errors uniform up to the reach of the attempts - 1
    capped actions ((attempts - 1) x delta in x and y, (attempts - 1) x rz_cap in rz: the oracle can still undo
    any of them without noise), and actuation noise `action_std` (mm, mm, deg)."""
    if attempts < 2:
        raise ValueError(f"the hard protocol needs at least 2 attempts (one action), got {attempts}")
    steps, lab = attempts - 1, base.labels
    errors = ErrorConfig(ex=steps * lab.delta, ey=steps * lab.delta, erz=steps * lab.rz_cap)
    perturb = replace(base.perturb, action_std=tuple(float(v) for v in action_std))
    return replace(base, max_attempts=int(attempts), errors=errors, perturb=perturb)


def _base_config(run: Path | None, data: Path) -> SimConfig:
    from tla.data.store import dataset_sim_config
    from tla.eval.closed_loop import run_sim_config

    return run_sim_config(run, data) if run is not None else dataset_sim_config(data)


def _trials(out: Path, run: Path | None, base: SimConfig, configs: dict[str, SimConfig], shapes: list[str],
            clearances: list[float], episodes: int, seed: int, workers: int) -> list[dict]:
    from tla.eval.closed_loop import run_closed_loop, save_results
    from tla.runinfo import write_run_metadata

    if run is None:
        from tla.policies.oracle import OraclePolicy

        factory, observe = OraclePolicy, False  # the oracle reads the true error: no rendering needed
    else:
        from tla.policies.registry import load_policy

        factory, observe = functools.partial(load_policy, str(run)), True
    recs = run_closed_loop(factory, list(shapes), [float(c) for c in clearances], episodes, base_seed=seed,
                           workers=workers, observe=observe, progress=False, conditions=configs)
    out = Path(out)
    rows = save_results(recs, out)
    write_run_metadata(out, base, seed)
    (out / "conditions.json").write_text(json.dumps({k: to_dict(c) for k, c in configs.items()}, indent=2))
    return rows


def robustness_closed_loop(out, data, episodes: int, seed: int = 0, workers: int = 2, run=None,
                           shape: str = "square", clearance: float = 2.0,
                           max_attempts: int | None = None) -> list[dict]:
    """Every robustness knob on (shape, clearance), `episodes` episodes each, in one worker pool;
    `max_attempts` replaces the simulator config's attempts per episode (None: unchanged)."""
    from tla.eval.closed_loop import with_max_attempts

    run = Path(run) if run is not None else None
    base = with_max_attempts(_base_config(run, Path(data)), max_attempts)
    return _trials(out, run, base, robust_configs(base), [shape], [clearance], episodes, seed, workers)


def hard_closed_loop(out, data, clearances: list[float], episodes: int, seed: int = 0, workers: int = 2, run=None,
                     shape: str = "square", attempts: int = 5) -> list[dict]:
    """The hard protocol on `shape` at each clearance, `episodes` episodes each."""
    run = Path(run) if run is not None else None
    base = _base_config(run, Path(data))
    return _trials(out, run, base, {HARD: hard_sim_config(base, attempts)}, [shape], clearances, episodes, seed,
                   workers)
