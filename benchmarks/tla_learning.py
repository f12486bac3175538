"""Does the tiny TLA learn? Train it for a fixed budget on the tiny single-peg split, score sp_test, and
print JSON: direction accuracy per axis, GCR, L1 (with the run's decoding and with the other one), the
collapse check, and the same metrics for the best
constant answer (the training labels' per-axis median) so "learned" means "beats a constant".

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tla_learning.py --out /tmp/tla_learning \
        [--data DIR] [--steps 3000] [--seed 0] [overrides like preprocess.contrast=false ...]

Without --data it builds the tiny preset's sp_train/sp_test splits (~40 s). Resumable: rerun the same
command after a kill. Takes ~12 min per 3000 steps on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None, help="a tiny-preset dataset (default: build sp splits)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: tla reproduce tiny's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="TLA overrides, e.g. model.position_table=false")
    args = ap.parse_args()

    from tla.data.build import build
    from tla.data.config import preset
    from tla.data.dataset import TactileDataset
    from tla.eval.offline import evaluate_offline, offline_metrics
    from tla.experiments.reproduce import PRESETS
    from tla.train.cli import train_run

    steps = args.steps or PRESETS["tiny"].steps_for("tla")
    data = args.data or args.out / "data"
    if not (data / "meta" / "info.json").exists():
        tiny = preset("tiny")
        cfg = dataclasses.replace(tiny, splits=tuple(s for s in tiny.splits if s.name.startswith("sp_")))
        build(cfg, data, workers=2)
    run = args.out / f"tla_s{args.seed}"
    t0 = time.time()
    train_run(data=data, out=run, policy="tla", split="sp_train", preset="tiny", max_steps=steps,
              resume=(run / "checkpoints" / "last").exists(), overwrite=True,
              overrides=[*args.overrides, f"model.seed={args.seed}", f"train.seed={args.seed}"])
    train_s = time.time() - t0
    evaluate_offline(run, data, "sp_test", args.out / "offline", progress=False)
    m = json.loads((args.out / "offline" / "metrics.json").read_text())
    other = "top" if m["decode"] == "mean" else "mean"  # the same run under the other decoding
    evaluate_offline(run, data, "sp_test", args.out / f"offline_{other}", progress=False, decode=other)
    m_other = json.loads((args.out / f"offline_{other}" / "metrics.json").read_text())

    train_ds, test_ds = TactileDataset(data, "sp_train"), TactileDataset(data, "sp_test")
    const = np.median(np.asarray(train_ds.actions), axis=0)
    labels = np.asarray(test_ds.actions)
    scal = test_ds._scalars  # clearances and shapes without decoding images
    c = offline_metrics(np.tile(const, (len(labels), 1)), labels, test_ds.errors, scal["clearance"],
                        [str(s) for s in scal["shape"]])
    keys = ("direction_x", "direction_y", "direction_rz", "gcr", "l1_x_all", "l1_y_all", "l1_rz_all")
    print(json.dumps({
        "benchmark": "tla_learning", "steps": steps, "seed": args.seed, "overrides": args.overrides,
        "train_seconds": round(train_s, 1), "decode": m["decode"], "tla": {k: m[k] for k in keys},
        f"tla_decode_{other}": {k: m_other[k] for k in keys}, "collapse": m["collapse"],
        "constant_answer": {"action": const.round(4).tolist(), **{k: c[k] for k in keys}},
        "beats_constant": {k: m[k] > c[k] for k in ("direction_x", "direction_y", "direction_rz")},
    }, indent=2))


if __name__ == "__main__":
    main()
