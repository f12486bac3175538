"""Multi-peg models from scratch vs fine-tuned from their single-peg run (`tla reproduce --mp-init`), per seed.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mp_init.py --data outputs/reproduce-tiny/data \
        --out outputs/mp-init-tiny [--seeds 0,1] [--episodes 50]

For each seed and policy (TLA, BC; the tiny preset): the single-peg run (sp_train), the multi-peg run from
scratch (mp_train, the paper's recipe) and the multi-peg run that starts from the single-peg one
(`tla train --init-from`, the tiny preset's recipe), with `tla reproduce --preset tiny`'s steps. Each
multi-peg run is scored on mp_test_id and mp_test_ood and in closed loop at 2.0 mm on the square and triangle
(seen) and round and hexagon (unseen) pegs, the same episodes for every run. Writes OUT/results.json and
OUT/report.md (mean ± sample std over seeds, then every run) and prints the JSON.

Resumable: a finished run or evaluation is kept. A run folder placed in OUT/runs by hand (e.g. a link to
an earlier run) is used only when its recorded data, split, steps, source run and resolved trainer and
policy configs are the ones this script would train with; otherwise the script stops and names it. ~90 min
per seed on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KINDS = ("mp_scratch", "mp_from_sp")
POLICIES = ("tla", "bc")
SHAPES = ("square", "triangle", "round", "hexagon")
METRICS = ("direction_x", "direction_y", "direction_rz", "gcr")


def run_spec(policy: str, kind: str, seed: int) -> tuple[str, int, list[str], str | None]:
    """(split, steps, overrides, source run name) of one run, as `tla reproduce --preset tiny` trains it."""
    from tla.experiments.reproduce import PRESETS
    from tla.policies.registry import seed_overrides

    tiny = PRESETS["tiny"]
    seeded = seed_overrides(policy, seed)
    if kind == "sp":
        return "sp_train", tiny.steps_for(policy), seeded, None
    if kind == "mp_scratch":  # the paper's recipe; the steps tla reproduce gave MP-TLA before --mp-init
        return "mp_train", tiny.steps_for(policy), seeded, None
    mp_key = "mp_tla" if policy == "tla" else f"{policy}_mp"
    return "mp_train", tiny.steps_for(policy, mp_key), [f"train.seed={seed}"], f"{policy}_sp_s{seed}"


def content_hash(data) -> str | None:
    """The dataset's content hash (meta/info.json): the same samples under another path are the same data."""
    info = Path(data or "") / "meta" / "info.json"
    return json.loads(info.read_text()).get("content_hash") if info.exists() else None


def check_existing(run: Path, data: Path, policy: str, split: str, steps: int, overrides: list[str],
                   source: Path | None) -> None:
    """A finished run in `run` must be exactly the one this script would train (links resolved), else stop."""
    from tla.train.cli import recorded_differences

    done = json.loads((run / "config.json").read_text())
    wrong = recorded_differences(done, policy, split, steps, overrides, source)
    if content_hash(done.get("data")) != content_hash(data):
        wrong.append("data")
    if wrong:
        raise SystemExit(f"{run} holds another run ({', '.join(wrong)} differ); move it away or rerun elsewhere")


def ensure_run(out: Path, data: Path, policy: str, kind: str, seed: int) -> Path:
    from tla.train.checkpoint import resumable
    from tla.train.cli import train_run

    split, steps, overrides, source = run_spec(policy, kind, seed)
    run = out / "runs" / f"{policy}_{kind}_s{seed}"
    src = out / "runs" / source if source else None
    if (run / "policy").is_dir() and (run / "config.json").exists():
        check_existing(run, data, policy, split, steps, overrides, src)
        return run
    train_run(data, run, policy, split, "tiny", steps, resume=resumable(run / "checkpoints"), overwrite=True,
              overrides=overrides, init_from=src)
    return run


def evaluate(run: Path, out: Path, data: Path, episodes: int, workers: int) -> dict:
    from tla.eval.closed_loop import evaluate_closed_loop
    from tla.eval.offline import evaluate_offline

    ev = out / "eval" / run.name
    scores = {}
    for split in ("mp_test_id", "mp_test_ood"):
        f = ev / split / "metrics.json"
        if not f.exists():
            evaluate_offline(run=run, data=data, split=split, out=ev / split, progress=False)
        m = json.loads(f.read_text())
        scores[split] = {k: m[k] for k in METRICS}
    f = ev / "closed_loop" / "summary.json"
    if not f.exists():
        evaluate_closed_loop(run=run, clearances=[2.0], shapes=list(SHAPES), episodes=episodes, out=ev / "closed_loop",
                             seed=0, workers=workers, data=data, progress=False)
    scores["closed_loop"] = {r["shape"]: {"success": r["success"], "mean_steps": r["mean_steps"]}
                             for r in json.loads(f.read_text())}
    return scores


def _stat(values: list[float]) -> str:
    v = 100 * np.asarray(values, float)
    return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else "")


def row(scores: list[dict]) -> list[str]:
    cells = []
    for split in ("mp_test_id", "mp_test_ood"):
        d = " / ".join(_stat([s[split][k] for s in scores]) for k in METRICS[:3])
        cells.append(f"{d}, {_stat([s[split]['gcr'] for s in scores])}")
    cells += [_stat([s["closed_loop"][shape]["success"] for s in scores]) for shape in SHAPES]
    return cells


def report(res: dict) -> str:
    from tla.runinfo import describe_hardware

    seeds = res["seeds"]
    head = ("| model | starts from | mp_test_id direction x / y / rz %, GCR % | mp_test_ood direction x / y / rz %, "
            "GCR % | square % | triangle % | round % (unseen) | hexagon % (unseen) |")
    lines = ["# Multi-peg models: from scratch vs from their single-peg run (tiny preset)", "",
             f"Seeds {', '.join(map(str, seeds))} (model initialisation and data order); mean ± sample std over "
             f"seeds. Closed loop: 2.0 mm, {res['episodes']} episodes per shape, the same episodes for every run. "
             f"Steps: {res['steps']}. Hardware: {describe_hardware(res['metadata']['hardware'])}; tla "
             f"{res['metadata']['versions'].get('tla')}, commit {res['metadata'].get('git_commit')}.", "",
             head, "|---|---|---|---|---|---|---|---|"]
    names = {"tla": "MP-TLA", "bc": "BC (multi-peg)"}
    starts = {"mp_scratch": "fresh weights (paper)", "mp_from_sp": "its single-peg run (**tiny preset**)"}
    for policy in POLICIES:
        for kind in KINDS:
            runs = [res["runs"][f"{policy}_{kind}_s{s}"] for s in seeds]
            lines.append(f"| {names[policy]} | {starts[kind]} | " + " | ".join(row(runs)) + " |")
    lines += ["", "Every run:", "", head.replace("| model |", "| run |"), "|---|---|---|---|---|---|---|---|"]
    for name, scores in res["runs"].items():
        lines.append(f"| {name} | {'fresh' if 'scratch' in name else name.split('_')[0] + '_sp'} | "
                     + " | ".join(row([scores])) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="a tiny-preset dataset (e.g. make demo's)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from tla.eval.determinism import dumps as strict_dumps
    from tla.runinfo import run_metadata, write_atomic

    seeds = [int(s) for s in args.seeds.split(",")]
    res = {"seeds": seeds, "episodes": args.episodes, "runs": {},
           "steps": {f"{p}_{k}": run_spec(p, k, 0)[1] for p in POLICIES for k in ("sp", *KINDS)},
           "metadata": run_metadata({"seeds": seeds, "episodes": args.episodes, "data": str(args.data)})}
    for seed in seeds:
        for policy in POLICIES:
            ensure_run(args.out, args.data, policy, "sp", seed)
            for kind in KINDS:
                run = ensure_run(args.out, args.data, policy, kind, seed)
                res["runs"][run.name] = evaluate(run, args.out, args.data, args.episodes, args.workers)
    write_atomic(args.out / "results.json", strict_dumps(res, indent=2))
    write_atomic(args.out / "report.md", report(res))
    print(json.dumps(res["runs"], indent=1))


if __name__ == "__main__":
    main()
