"""Closed-loop trials (paper Tables III, IV): episodes in the Gymnasium environment.

Each condition (shape, clearance) runs the same fixed list of episode seeds, so every policy faces the
same starts. An episode succeeds when the peg inserts within `max_attempts` attempts; steps = actions
executed before the successful insertion. Episodes run in parallel worker processes, each building
its own policy from a picklable factory.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tla.config import from_dict
from tla.eval.determinism import EVAL_THREADS, dumps, torch_threads
from tla.eval.metrics import wilson_interval
from tla.policies.base import batch_for, policy_modality
from tla.progress import progress_bar
from tla.sim.config import SimConfig
from tla.sim.env import PegInHoleEnv


@dataclass
class EpisodeRecord:
    shape: str
    clearance: float
    seed: int
    success: bool
    steps: int  # actions executed (before the insertion, if it happened)
    attempts: int
    errors: list = field(default_factory=list)  # pose error before each attempt (mm, mm, deg)
    actions: list = field(default_factory=list)
    condition: str = ""  # the named simulator condition it ran under (run_closed_loop's `conditions`), if any


def episode_seeds(base_seed: int, n: int) -> list[int]:
    """The fixed episode seeds of a condition: the same for every policy and every condition."""
    return [int(s) for s in np.random.SeedSequence(base_seed).generate_state(n, dtype=np.uint32)]


def run_episode(env: PegInHoleEnv, policy, seed: int, shape: str, clearance: float) -> EpisodeRecord:
    obs, info = env.reset(seed=seed, options={"shape": shape, "clearance": clearance})
    rec = EpisodeRecord(shape, clearance, seed, False, 0, info["attempts"], [info["error"].tolist()])
    while True:  # the true state goes only to a policy that declares it (the oracle)
        batch = batch_for(policy, obs[None], [shape], errors=[info["error"]], clearances=[clearance])
        action = policy.predict(batch).actions[0]
        obs, _, terminated, truncated, info = env.step(action)
        rec.steps += 1
        rec.actions.append(np.asarray(action, dtype=float).tolist())
        rec.errors.append(info["error"].tolist())
        rec.attempts = info["attempts"]
        if terminated or truncated:
            rec.success = bool(terminated)
            return rec


def _worker(args) -> list[dict]:
    with torch_threads(EVAL_THREADS):  # the policy's actions depend on the thread count in the last bits
        return _run_jobs(args)


def _run_jobs(args) -> list[dict]:
    policy_factory, configs, observe, jobs = args
    policy = policy_factory()
    envs: dict[str, PegInHoleEnv] = {}
    out = []
    for condition, shape, c, seed in jobs:
        if condition not in envs:
            envs[condition] = PegInHoleEnv(configs[condition], observe=observe, modality=policy_modality(policy))
        rec = run_episode(envs[condition], policy, seed, shape, c)
        rec.condition = condition
        out.append(asdict(rec))
    return out


def run_closed_loop(
    policy_factory: Callable,
    shapes: list[str],
    clearances: list[float],
    episodes: int,
    base_seed: int = 0,
    sim_cfg: SimConfig | None = None,
    workers: int = 1,
    observe: bool = True,
    chunk: int = 10,
    progress: bool = True,
    conditions: dict[str, SimConfig] | None = None,
) -> list[EpisodeRecord]:
    """Run `episodes` episodes per (shape, clearance); returns records in a fixed order. With `conditions`
    (name -> simulator config, e.g. one per robustness knob) every condition runs the same episode list in
    one worker pool instead of `sim_cfg`, and each record names its condition."""
    if episodes < 1:  # checked first: nothing is written for a request that cannot give a summary
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    configs = dict(conditions) if conditions else {"": sim_cfg or SimConfig()}
    seeds = episode_seeds(base_seed, episodes)
    jobs = [(k, s, float(c), seed) for k in configs for s in shapes for c in clearances for seed in seeds]
    batches = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    results: list[list[dict]] = [None] * len(batches)  # type: ignore[list-item]
    workers = min(workers, len(batches))  # a spawned worker costs seconds: none for a single batch
    with progress_bar("closed loop", "episodes", enabled=progress, transient=True) as bar:
        task = bar.add_task("episodes", total=len(jobs))
        if workers <= 1:
            for i, b in enumerate(batches):
                results[i] = _worker((policy_factory, configs, observe, b))
                bar.advance(task, len(b))
        else:
            # spawned workers: a worker forked from a process whose BLAS / OpenMP / progress threads hold a
            # lock can hang forever (seen twice with 0 s of CPU); a fresh interpreter costs ~2 s
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_worker, (policy_factory, configs, observe, b)): i for i, b in enumerate(batches)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.advance(task, len(batches[futures[fut]]))
    return [EpisodeRecord(**r) for batch in results for r in batch]


def summarize(records: list[EpisodeRecord]) -> list[dict]:
    """Per condition: success rate with its Wilson 95% interval and mean steps of successful episodes (rows
    of named simulator conditions carry the name as `condition`)."""
    groups: dict[tuple, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        groups[(r.condition, r.shape, r.clearance)].append(r)
    rows = []
    for (condition, shape, c), recs in groups.items():
        wins = [r for r in recs if r.success]
        lo, hi = wilson_interval(len(wins), len(recs))
        rows.append({
            **({"condition": condition} if condition else {}),
            "shape": shape, "clearance": c, "episodes": len(recs), "success": len(wins) / len(recs),
            "ci_low": lo, "ci_high": hi,
            "mean_steps": float(np.mean([r.steps for r in wins])) if wins else float("nan"),
        })
    return rows


def with_max_attempts(cfg: SimConfig, max_attempts: int | None) -> SimConfig:
    """`cfg` with `max_attempts` attempts per episode (None: unchanged); the run metadata records it."""
    if max_attempts is None:
        return cfg
    if int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be >= 1 (the episode's first attempt), got {max_attempts}")
    return replace(cfg, max_attempts=int(max_attempts))


def run_sim_config(run: Path, data: Path | None):
    """The simulator config for closed-loop trials of `run`: the explicit --data's (the sensor must match the
    observation spec the policy was trained on), else the one the run recorded beside its weights
    (policy/observation.json), else, for runs of older versions, its training dataset's; the default config
    with a warning when none is known."""
    from rich.console import Console

    from tla.data.store import dataset_sim_config
    from tla.policies.registry import trained_on
    from tla.sim.observation import ObservationSpec, check_same_spec

    spec, recorded_sim = trained_on(run)
    if data is not None:
        cfg = dataset_sim_config(data)
        check_same_spec(spec, ObservationSpec.of_sim(cfg, spec.modality) if spec else None, f"the simulator of {data}")
        return cfg
    if recorded_sim is not None:
        return from_dict(SimConfig, recorded_sim)
    cfg_path = run / "config.json"
    recorded = json.loads(cfg_path.read_text()).get("data") if cfg_path.exists() else None
    if recorded and Path(recorded).exists():
        return dataset_sim_config(recorded)
    Console(stderr=True).print(f"[yellow]warning:[/yellow] {run} records no simulator config and names no dataset; using "
                  f"the default sensor ({SimConfig().render.height}x{SimConfig().render.width}); pass --data")
    return SimConfig()


def evaluate_closed_loop(run, clearances: list[float], shapes: list[str], episodes: int, out, seed: int = 0,
                         workers: int = 2, data=None, progress: bool = True, decode: str | None = None,
                         constrained: bool | None = None, max_attempts: int | None = None) -> list[dict]:
    """Closed-loop trials of the trained `run` on the sensor it was trained on (see run_sim_config): writes
    out/{records.jsonl, summary.json, trajectories.png, run metadata}; returns the summary rows. `decode`,
    `constrained` (TLA runs only): act by this `generate.decode` / `generate.constrained`, not the run's.
    `max_attempts`: attempts per episode instead of the simulator config's (the paper's 15)."""
    import functools

    from tla.eval.figures import trajectory_plot
    from tla.policies.registry import load_policy
    from tla.runinfo import write_run_metadata

    run, out = Path(run), Path(out)
    if decode is not None or constrained is not None:  # a bad request fails here, before any worker starts
        load_policy(str(run), decode, constrained)
    sim_cfg = with_max_attempts(run_sim_config(run, Path(data) if data is not None else None), max_attempts)
    factory = functools.partial(load_policy, str(run), decode, constrained)
    recs = run_closed_loop(factory, list(shapes), [float(c) for c in clearances], episodes, base_seed=seed,
                           sim_cfg=sim_cfg, workers=workers, progress=progress)
    rows = save_results(recs, out)
    trajectory_plot(recs, out / "trajectories.png")
    options = {k: v for k, v in (("decode", decode), ("constrained", constrained)) if v is not None}
    write_run_metadata(out, {"sim_config": asdict(sim_cfg), **options} if options else sim_cfg, seed)
    return rows


def save_records(records: list[EpisodeRecord], path: str | Path) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")


def save_results(records: list[EpisodeRecord], out: str | Path) -> list[dict]:
    """Write `records.jsonl` and `summary.json` into `out`; returns the summary rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    save_records(records, out / "records.jsonl")
    (out / "summary.json").write_text(dumps(rows, indent=2))  # NaN mean_steps (no success) -> null
    return rows
