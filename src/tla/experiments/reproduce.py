"""`tla reproduce`: the paper's experimental section in one command, resumable stage by stage.

Stages: build (or reuse) the dataset; train BC, DP and TLA on single-peg data and on multi-peg data;
offline evaluation (Tables I, II, Fig. 4); closed-loop trials (Tables III, IV); the report. Each stage
writes `stages/<name>.json` when it completes and is skipped when that marker exists, so a killed run
resumes (training itself resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from rich.console import Console

from tla.eval.determinism import dumps as strict_dumps
from tla.experiments.report import collapse_warnings, write_report
from tla.experiments.tables import (
    HARD_CLEARANCES,
    HARD_MODELS,
    HARD_SHAPE,
    MODELS,
    ROBUST_CLEARANCE,
    ROBUST_MODELS,
    ROBUST_SHAPE,
    TABLE1,
    TABLE2,
    TABLE3_CLEARANCES,
    TABLE3_MODELS,
    TABLE4_MODELS,
    TABLE4_SHAPES,
)
from tla.runinfo import hardware, run_metadata, write_atomic

console = Console()

@dataclass
class ReproducePreset:
    name: str
    data_preset: str  # tla data build preset
    train_preset: str  # tiny (CPU) or paper
    # optimizer steps per training run, one number or per policy ({"bc": 1000, ...}); None = the train
    # preset's epochs
    max_steps: int | dict[str, int] | None = None
    episodes: int = 50  # closed-loop episodes per condition (the paper's 50)
    robust_episodes: int = 50  # closed-loop episodes per robustness knob (tables.ROBUSTNESS)
    hard_episodes: int = 50  # closed-loop episodes per clearance of the hard protocol
    # attempts per episode in Tables III, IV and the robustness table; None: the paper's (SimConfig)
    max_attempts: int | None = None
    hard_attempts: int = 5  # attempts allowed in the hard protocol (the paper's protocol: SimConfig.max_attempts)
    hard_clearances: tuple[float, ...] = HARD_CLEARANCES  # square-peg clearances (mm) of the hard protocol
    workers: int = 2
    seed: int = 0
    train_overrides: list[str] = field(default_factory=list)  # `train.*` keys, for every model
    tla_overrides: list[str] = field(default_factory=list)  # TLA only (e.g. model.path=...)
    # where the multi-peg runs start: "scratch" (the paper: each run from its base) or "sp" (each fine-tunes
    # the same policy's single-peg run on the multi-peg split, `tla train --init-from`; BC, DP and TLA alike)
    mp_init: str = "scratch"
    budget_notes: dict[str, str] = field(default_factory=dict)  # policy -> why this budget (for the report)

    def steps_for(self, policy: str, key: str | None = None) -> int | None:
        """Steps of a run: `max_steps[key]` (a run, e.g. "mp_tla"), else `max_steps[policy]`, else the number."""
        if isinstance(self.max_steps, dict):
            return self.max_steps.get(key, self.max_steps.get(policy))
        return self.max_steps


PRESETS = {
    # smoke splits hold a few dozen samples: small batches so every model gets whole batches. Its 4-step
    # models never insert, so every episode runs to its last attempt: 3 attempts (2 actions), not 15, keep
    # the pipeline check's closed loops (most of its time) short; the report states the attempts used.
    "smoke": ReproducePreset("smoke", "smoke", "tiny", max_steps=4, episodes=2, robust_episodes=2, hard_episodes=2,
                             max_attempts=3, hard_attempts=3,
                             train_overrides=["train.batch_size=4", "train.val_fraction=0.1"], mp_init="sp"),
    # For `make demo` (aimed at <= 60 min with the install on 2 cores). All three models read the marker flow
    # at this preset; per step ~0.13 s BC and ~0.2 s DP at batch 32 (48 x 64 input), ~0.18 s tiny TLA at
    # batch 8; closed-loop episodes cost up to ~0.8 s each when the policy keeps failing. The robustness knobs
    # (5 knobs x 20 episodes per model) and the hard protocol (2.0 mm only, 20 episodes of at most 5 attempts)
    # are sized so that they, the 0.6 mm column and the pentagon add ~4 min of the 4 models' closed loop.
    "tiny": ReproducePreset(
        "tiny", "tiny", "tiny", max_steps={"bc": 1500, "dp": 2000, "tla": 2500, "mp_tla": 1500}, episodes=50,
        robust_episodes=20, hard_episodes=20, hard_clearances=(2.0,), mp_init="sp",
        budget_notes={
            "bc": "1500 steps x 32 (~8 epochs of sp_train, ~3.5 min): 1000 steps on the same input gave the same "
                  "sp_test accuracy (93/88/94%) in a calibration run; the table above says whether the "
                  "validation loss had flattened.",
            "dp": "2000 steps x 32 (~11 epochs, ~7 min): what make demo's CPU time allows beside the other five "
                  "runs; DP's denoising loss falls slowly, so check the table above before reading its rows "
                  "as DP's plateau.",
            "tla": "2500 steps x 16 (~7 epochs of sp_train, ~10 min): batch 16 on the 168 px composite "
                   "costs ~1.3x a batch-8 step on 224 px; in calibration (seed 0, sp_test) 3000 x 16 gave "
                   "83/77/92% direction accuracy against 80/76/82% for 3000 x 8 at 224 px; 2500 steps keep "
                   "make demo within its hour. MP-TLA fine-tunes SP-TLA for 1500 steps (~4 epochs of mp_train): "
                   "from scratch, 2500 steps left it at validation loss 0.598 (seed 0); from SP-TLA, 1500 steps "
                   "reached 0.548 and 2500 steps 0.529, not worth make demo's extra ~4 min.",
            "mp": "Every multi-peg run (BC, DP, TLA) starts from the same policy's single-peg run (`mp_init=sp`, "
                  "a departure from the paper, where each starts from its base model): from scratch, the 8k-sample "
                  "multi-peg split left the tiny TLA reading x poorly and unreliably (61 / 75% direction accuracy "
                  "on seeds 0 / 1; see the README's multi-peg table).",
        }),
    "paper": ReproducePreset("paper", "paper", "paper"),
}


class Stages:
    """Run-once stages with completion markers and wall times."""

    def __init__(self, out: Path):
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def seconds(self) -> dict[str, float]:
        done = sorted(self.dir.glob("*.json"), key=lambda p: p.stat().st_mtime)  # in the order they ran
        return {p.stem: json.loads(p.read_text())["seconds"] for p in done}

    def run(self, name: str, fn) -> None:
        marker = self.dir / f"{name}.json"
        if marker.exists():
            console.print(f"[dim]skip {name} (done)[/dim]")
            return
        console.rule(name)
        t0 = time.time()
        fn()
        write_atomic(marker, json.dumps({"seconds": time.time() - t0}))  # a cut marker would break collect


def reproduce(preset: ReproducePreset, out: Path, data: Path | None = None) -> dict:
    from tla.data.build import build, with_seed
    from tla.data.config import preset as data_preset
    from tla.eval.closed_loop import evaluate_closed_loop
    from tla.eval.offline import evaluate_offline
    from tla.experiments.robustness import hard_closed_loop, robustness_closed_loop
    from tla.train.checkpoint import resumable
    from tla.train.cli import train_run

    data = data or out / "data"
    settings = reproduce_settings(preset, data)
    check_same_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    meta = {**run_metadata(asdict(preset), preset.seed), "settings": settings}
    write_atomic(out / "reproduce.json", json.dumps(meta, indent=2, default=str))  # read back on resume
    stages = Stages(out)

    def build_data():
        info = build(with_seed(data_preset(preset.data_preset), preset.seed), data, workers=preset.workers)
        if info is None:
            raise RuntimeError(f"dataset build in {data} is incomplete; rerun to resume")

    if not (data / "meta" / "info.json").exists():
        stages.run("data", build_data)
    for key, _, policy, split in MODELS:
        run_dir = out / "runs" / key
        source = initial_run_of(key, preset)
        overrides = preset.train_overrides + (preset.tla_overrides if policy == "tla" else [])
        if source is not None:  # the policy config comes with the source run's weights: train.* only
            overrides = [o for o in overrides if o.startswith("train.")]
        stages.run(f"train_{key}", partial(
            train_run, data=data, out=run_dir, policy=policy, split=split, preset=preset.train_preset,
            max_steps=preset.steps_for(policy, key), resume=resumable(run_dir / "checkpoints"), overwrite=True,
            overrides=overrides, init_from=out / "runs" / source if source else None))
    for key, split in TABLE1 + TABLE2:
        stages.run(f"offline_{key}_{split}", partial(
            evaluate_offline, run=out / "runs" / key, data=data, split=split, out=out / "offline" / key / split,
            progress=False))
    trials = {"t3": (TABLE3_MODELS, list(TABLE3_CLEARANCES), ["square"]),
              "t4": (TABLE4_MODELS, [2.0], list(TABLE4_SHAPES))}
    for table, (models, clearances, shapes) in trials.items():
        for key in models:
            stages.run(f"closed_loop_{table}_{key}", partial(
                evaluate_closed_loop, run=out / "runs" / key, clearances=clearances, shapes=shapes,
                episodes=preset.episodes, out=out / "closed_loop" / f"table{table[1]}" / key, seed=preset.seed,
                workers=preset.workers, data=data, progress=False, max_attempts=preset.max_attempts))
    for table, (_, clearances, shapes) in trials.items():  # the reference: same episode seeds, true errors
        stages.run(f"closed_loop_{table}_oracle", partial(
            oracle_closed_loop, out=out / "closed_loop" / f"table{table[1]}" / "oracle", data=data,
            clearances=clearances, shapes=shapes, episodes=preset.episodes, seed=preset.seed,
            workers=preset.workers, max_attempts=preset.max_attempts))
    # harder conditions (tla.experiments.robustness): each knob at one level, then the hard protocol; oracle last
    for key in (*ROBUST_MODELS, None):
        name = key or "oracle"
        stages.run(f"closed_loop_robust_{name}", partial(
            robustness_closed_loop, out=out / "closed_loop" / "robustness" / name, data=data,
            episodes=preset.robust_episodes, seed=preset.seed, workers=preset.workers,
            run=out / "runs" / key if key else None, shape=ROBUST_SHAPE, clearance=ROBUST_CLEARANCE,
            max_attempts=preset.max_attempts))
    for key in (*HARD_MODELS, None):
        name = key or "oracle"
        stages.run(f"closed_loop_hard_{name}", partial(
            hard_closed_loop, out=out / "closed_loop" / "hard" / name, data=data, clearances=list(preset.hard_clearances),
            episodes=preset.hard_episodes, seed=preset.seed, workers=preset.workers,
            run=out / "runs" / key if key else None, shape=HARD_SHAPE, attempts=preset.hard_attempts))
    results = collect(out, preset)
    (out / "results.json").write_text(strict_dumps(results, indent=2))
    write_report(out, results)
    for line in collapse_warnings(results):
        console.print(f"[bold red]COLLAPSED[/bold red] {line[2:]}", highlight=False)
    return results


def initial_run_of(key: str, preset: ReproducePreset) -> str | None:
    """The run a model starts from: with `mp_init="sp"` a multi-peg run starts from the single-peg run of
    the same policy (trained before it in MODELS); else None (a fresh model)."""
    if preset.mp_init not in ("scratch", "sp"):
        raise ValueError(f"mp_init={preset.mp_init!r}: use 'scratch' or 'sp'")
    policy, split = next((p, s) for k, _, p, s in MODELS if k == key)
    if preset.mp_init == "scratch" or not split.startswith("mp"):
        return None
    return next(k for k, _, p, s in MODELS if p == policy and s.startswith("sp"))


def reproduce_settings(preset: ReproducePreset, data: Path) -> dict:
    """What the stored stages depend on: the preset (less its notes and worker count, which change no
    result), the dataset and the package version (bumped whenever a preset's behaviour changes)."""
    import tla

    p = {k: v for k, v in asdict(preset).items() if k not in ("budget_notes", "workers")}
    if p["max_attempts"] is None:  # the paper's attempts, as in folders written before the field existed
        del p["max_attempts"]
    return json.loads(json.dumps({"preset": p, "data": str(Path(data).resolve()), "tla_version": tla.__version__}))


def check_same_settings(out: Path, settings: dict) -> None:
    """Finished stages are reused only under the settings that produced them; anything else is refused
    (a new preset or seed in an old folder would otherwise report old numbers under the new label)."""
    path = out / "reproduce.json"
    if not path.exists():
        if (out / "stages").is_dir() and any((out / "stages").glob("*.json")):
            raise ReproduceError(f"{out} holds reproduce stages but no reproduce.json saying how they were made; "
                                 "use another --out or delete the folder")
        return
    prev = json.loads(path.read_text()).get("settings")
    if prev == settings:
        return
    if prev is None:
        raise ReproduceError(f"{out} was written by an older version of tla (no recorded settings); its results "
                             "cannot be reused: use another --out or delete the folder")
    changed = [f"{k}: {prev['preset'].get(k)!r} -> {settings['preset'].get(k)!r}"
               for k in sorted(set(prev["preset"]) | set(settings["preset"]))
               if prev["preset"].get(k) != settings["preset"].get(k)]
    changed += [f"{k}: {prev.get(k)!r} -> {settings.get(k)!r}" for k in ("data", "tla_version")
                if prev.get(k) != settings.get(k)]
    raise ReproduceError(f"{out} holds a reproduce run made with other settings ({'; '.join(changed)}); "
                         "use another --out, or delete the folder to start over")


class ReproduceError(ValueError):
    pass


def oracle_closed_loop(out: Path, data: Path, clearances: list[float], shapes: list[str], episodes: int, seed: int,
                       workers: int, max_attempts: int | None = None) -> None:
    """The oracle (true error -> label) on the same episode list as the models: the steps to compare with."""
    from tla.data.store import dataset_sim_config
    from tla.eval.closed_loop import run_closed_loop, save_results, with_max_attempts
    from tla.policies.oracle import OraclePolicy
    from tla.runinfo import write_run_metadata

    sim_cfg = with_max_attempts(dataset_sim_config(data), max_attempts)
    recs = run_closed_loop(OraclePolicy, list(shapes), [float(c) for c in clearances], episodes,
                           base_seed=seed, sim_cfg=sim_cfg, workers=workers, observe=False, progress=False)
    save_results(recs, out)
    write_run_metadata(out, sim_cfg, seed)


def training_budget(run_dir: Path) -> dict:
    """What a run trained for (steps, batch, samples, epochs) and whether its validation curve was flat."""
    from tla.train.curves import plateau

    cfg = _load(run_dir / "config.json")
    steps, batch = cfg["total_steps"], cfg["train"]["batch_size"]
    return {"steps": steps, "batch_size": batch, "train_samples": cfg["train_samples"],
            "epochs": steps * batch / max(1, cfg["train_samples"]), "lr": cfg["train"]["lr"],
            "plateau": plateau(run_dir), "input": model_input(cfg.get("policy_config") or {}),
            "init_from": Path(cfg["init_from"]["run"]).name if cfg.get("init_from") else None}


def model_input(policy_cfg: dict) -> dict:
    """What a model reads, from its resolved config: the modality and, where the policy has them, the
    image size, composite size, frame preprocessing, position table, answer format and decoding (the paper:
    rgb, raw, no table, the action alone, the top beam of a free beam search)."""
    out = {"modality": policy_cfg.get("modality", "rgb")}
    for key in ("image_size", "composite_size"):
        if key in policy_cfg:
            out[key] = policy_cfg[key]
    if policy_cfg.get("layout", "composite") != "composite":  # the frames layout: 8 images, not one
        out.pop("composite_size", None)
        out.update(layout=policy_cfg["layout"], frame_size=policy_cfg["frame_size"])
    pre = policy_cfg.get("preprocess")
    if pre is not None:
        out["preprocess"] = [k for k in ("demarker", "contrast") if pre.get(k)]
    if "model" in policy_cfg:
        out["position_table"] = bool(policy_cfg["model"].get("position_table"))
    if "generate" in policy_cfg:  # TLA: which action the beams give (the paper: the top beam)
        out["decode"] = policy_cfg["generate"].get("decode", "top")
        # departures named only where taken (the paper: the action alone, free beam search)
        if policy_cfg.get("answer", "action") != "action":
            out["answer"] = policy_cfg["answer"]
        if policy_cfg["generate"].get("constrained"):
            out["constrained"] = True
    return out


def _load(path: Path):
    return json.loads(path.read_text())


def collect(out: Path, preset: ReproducePreset) -> dict:
    """Everything the report shows, in one JSON-able dict."""
    names = {key: name for key, name, _, _ in MODELS}
    res: dict = {"preset": asdict(preset), "hardware": hardware(), "stage_seconds": Stages(out).seconds(),
                 "metadata": _load(out / "reproduce.json"), "table1": {}, "table2": {}, "table3": {}, "table4": {},
                 "budgets": {key: training_budget(out / "runs" / key) for key, *_ in MODELS}}
    for key, split in TABLE1:
        res["table1"][names[key]] = _load(out / "offline" / key / split / "metrics.json")
    for key, split in TABLE2:
        res["table2"].setdefault(names[key], {})[split] = _load(out / "offline" / key / split / "metrics.json")
    for table, models in (("table3", TABLE3_MODELS), ("table4", TABLE4_MODELS)):
        for key in models:
            res[table][names[key]] = _load(out / "closed_loop" / table / key / "summary.json")
        oracle = out / "closed_loop" / table / "oracle" / "summary.json"
        if oracle.exists():
            res[f"{table}_oracle"] = _load(oracle)
    for table, models in (("robustness", ROBUST_MODELS), ("hard", HARD_MODELS)):
        for key in (*models, "oracle"):
            summary = out / "closed_loop" / table / key / "summary.json"
            if summary.exists():  # absent in folders of older versions
                res.setdefault(table, {})["oracle" if key == "oracle" else names[key]] = _load(summary)
    res["protocols"] = protocols(preset)
    return res


def protocols(preset: ReproducePreset) -> dict:
    """How the closed-loop trials were run: episodes, seeds and the harder conditions (for the report)."""
    from tla.eval.closed_loop import episode_seeds
    from tla.experiments.robustness import hard_sim_config
    from tla.experiments.tables import ROBUSTNESS
    from tla.sim.config import SimConfig

    hard = hard_sim_config(SimConfig(), preset.hard_attempts)
    return {
        "seed": preset.seed,
        "episode_seeds": "tla.eval.closed_loop.episode_seeds(seed, n): the first n words of SeedSequence(seed), "
                         "the same list for every model and condition",
        "first_seeds": episode_seeds(preset.seed, 3),
        "paper": {"episodes": preset.episodes, "paper_max_attempts": SimConfig().max_attempts,
                  "max_attempts": preset.max_attempts or SimConfig().max_attempts},
        "robustness": {"episodes": preset.robust_episodes, "shape": ROBUST_SHAPE, "clearance": ROBUST_CLEARANCE,
                       "knobs": {k: {"label": label, "overrides": list(o)} for k, label, o in ROBUSTNESS}},
        "hard": {"episodes": preset.hard_episodes, "shape": HARD_SHAPE, "clearances": list(preset.hard_clearances),
                 "max_attempts": hard.max_attempts, "errors": [hard.errors.ex, hard.errors.ey, hard.errors.erz],
                 "action_std": list(hard.perturb.action_std)},
    }
