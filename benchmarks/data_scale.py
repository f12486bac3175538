"""Is the TLA short of data where BC is not? Train the tiny TLA and the tiny BC on single-peg training sets of
several sizes and score both on one development set, held apart from every training set and from the report's
test split.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/data_scale.py --out /tmp/data_scale \
        [--sizes 6000,18000] [--seed 0] [--dev-samples 600] [--tla-steps 2500] [--bc-steps 1500] \
        [--extra-tla-steps 5000] [--jobs 2]

Each training set is the tiny data preset's sp_train at that size (dataset seed 0: the same simulator, sampling
and episode seeds as `tla data build --preset tiny`, so the 6000 set holds the demo's training episodes). The
development set is sp_test of dataset seed 1 (other episodes of the same distribution): settings are compared
there, never on a test split. Steps default to `tla reproduce --preset tiny`'s (TLA 2500 x 16, BC 1500 x 32),
the same for every size, so a larger set is seen fewer times per sample; `--extra-tla-steps N` adds one TLA run
on the largest set with N steps. Runs go one per core (`--jobs`), each single-threaded; every stage resumes
(rerun the same command after a kill). Writes OUT/data_scale.json (printed too) and OUT/data_scale.png.
On 2 cores: ~27 min for the defaults (datasets 4 min, the two TLA runs side by side 19 min, then the two BC
runs 4.3 min); `--extra-tla-steps 5000` adds ~28 min.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

KEYS = ("direction_x", "direction_y", "direction_rz", "gcr", "l1_x_all", "l1_y_all", "l1_rz_all")


def build_set(out: Path, sp_train: int, sp_test: int, seed: int) -> Path:
    from tla.data.build import build
    from tla.data.config import SplitSpec, preset

    if not (out / "meta" / "info.json").exists():
        cfg = dataclasses.replace(preset("tiny"), seed=seed,
                                  splits=(SplitSpec("sp_train", sp_train), SplitSpec("sp_test", sp_test)))
        build(cfg, out, workers=2)
    return out


def train_and_score(job: tuple) -> dict:
    """One run (policy, data, steps, seed) trained or resumed in OUT/runs/NAME, scored on the dev set."""
    policy, data, dev, steps, seed, run = job
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)  # one run per core, also when torch was loaded before the fork
    from tla.eval.offline import evaluate_offline
    from tla.policies.registry import seed_overrides
    from tla.train.cli import train_run

    if not (run / "policy").exists():
        summary = train_run(data=data, out=run, policy=policy, split="sp_train", preset="tiny", max_steps=steps,
                            resume=(run / "checkpoints" / "last").exists(), overwrite=True,
                            overrides=seed_overrides(policy, seed))
        seconds = summary.get("elapsed_s")
    else:
        seconds = None  # trained by an earlier invocation
    scored = run.parent.parent / "dev_scores" / run.name
    if not (scored / "metrics.json").exists():
        evaluate_offline(run, dev, "sp_test", scored, progress=False)
    m = json.loads((scored / "metrics.json").read_text())
    sizes = m["direction_by_label_size"]
    return {"policy": policy, "steps": steps, "run": run.name, "train_seconds": seconds,
            **{k: m[k] for k in KEYS}, "samples": m["samples"],
            "direction_small": {a: sizes[f"{a}_small"]["accuracy"] for a in ("x", "y", "rz")}}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for policy, colour in (("tla", "tab:blue"), ("bc", "tab:orange")):
        for steps in sorted({r["steps"] for r in rows if r["policy"] == policy}):
            pick = sorted((r for r in rows if r["policy"] == policy and r["steps"] == steps),
                          key=lambda r: r["train_samples"])
            n = [r["train_samples"] for r in pick]
            style = "-o" if len(pick) > 1 else "s"
            for ax, key in zip(axes, ("direction_x", "direction_y", "direction_rz", "gcr")):
                ax.plot(n, [100 * r[key] for r in pick], style, color=colour, label=f"{policy.upper()} {steps} steps")
    for ax, title in zip(axes, ("direction x %", "direction y %", "direction rz %", "GCR %")):
        ax.set_title(title)
        ax.set_xlabel("training samples (sp_train)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("tiny TLA and BC against training-set size (development set: dataset seed 1, sp_test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", default="6000,18000", help="sp_train sizes, comma-separated")
    ap.add_argument("--seed", type=int, default=0, help="model and training seed")
    ap.add_argument("--dev-samples", type=int, default=600)
    ap.add_argument("--tla-steps", type=int, default=None, help="default: tla reproduce tiny's")
    ap.add_argument("--bc-steps", type=int, default=None, help="default: tla reproduce tiny's")
    ap.add_argument("--extra-tla-steps", type=int, default=0, help="one more TLA run on the largest set")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    from tla.experiments.reproduce import PRESETS
    from tla.runinfo import run_metadata, write_atomic

    sizes = sorted(int(s) for s in args.sizes.split(","))
    tla_steps = args.tla_steps or PRESETS["tiny"].steps_for("tla")
    bc_steps = args.bc_steps or PRESETS["tiny"].steps_for("bc")
    dev = build_set(args.out / "dev", 0, args.dev_samples, seed=1)
    jobs, train_samples = [], {}
    for n in sizes:
        data = build_set(args.out / f"train_{n}", n, 0, seed=0)
        for policy, steps in (("tla", tla_steps), ("bc", bc_steps)):
            run = args.out / "runs" / f"{policy}_{n}_{steps}_s{args.seed}"
            jobs.append((policy, data, dev, steps, args.seed, run))
            train_samples[run.name] = n
    if args.extra_tla_steps:
        n = sizes[-1]
        run = args.out / "runs" / f"tla_{n}_{args.extra_tla_steps}_s{args.seed}"
        jobs.append(("tla", args.out / f"train_{n}", dev, args.extra_tla_steps, args.seed, run))
        train_samples[run.name] = n
    jobs.sort(key=lambda j: j[0] != "tla")  # the long TLA runs first, so the short BC runs fill in beside them
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(train_and_score, jobs))
    for r in rows:
        r["train_samples"] = train_samples[r["run"]]
    rows.sort(key=lambda r: (r["policy"] != "tla", r["steps"], r["train_samples"]))
    result = {"benchmark": "data_scale", "sizes": sizes, "seed": args.seed, "dev": {"dataset_seed": 1,
              "split": "sp_test", "samples": args.dev_samples}, "rows": rows, "metadata": run_metadata()}
    write_atomic(args.out / "data_scale.json", json.dumps(result, indent=2))
    plot(rows, args.out / "data_scale.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
