"""How do a policy's closed-loop episodes fail? Read the `records.jsonl` that `tla eval closed-loop` writes and
print JSON per (shape, clearance): where the failed episodes end (inside the +-c/2 box on x and y, where the
paper's labels are zero, or outside it), how far from the hole they end against where they started, and what
the policy answered on the steps of failed episodes where the label moves x or y: a move of the wrong sign,
a "stay" (within the goal tolerance, 0.1 mm), or the right sign; and how often it turned rz by 95% or more of
the label cap (1.5 deg).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/closed_loop_failures.py OUT/records.jsonl [...]

A policy that stalls on its labels ends inside the box with "stay" answers; one that misreads the touch
ends outside it, with wrong-sign moves or stays where the label moves (the README's round-peg paragraph).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def breakdown(records: list[dict], rz_cap: float) -> dict:
    """Failure statistics of one condition's episode records (see the module docstring)."""
    from tla.eval.offline import GoalTolerance
    from tla.sim.labels import action_label

    stay_mm = GoalTolerance().eta  # a move this small counts as staying put, as in the offline metrics

    fails = [r for r in records if not r["success"]]
    out = {"episodes": len(records), "success": (len(records) - len(fails)) / max(len(records), 1),
           "failed": len(fails)}
    if not fails:
        return out
    clearance = records[0]["clearance"]
    start = np.array([r["errors"][0] for r in fails])
    end = np.array([r["errors"][-1] for r in fails])
    # each action with the error it answered (the last error is the one the episode ended on)
    errors = np.concatenate([np.array(r["errors"][:len(r["actions"])]) for r in fails])
    actions = np.concatenate([np.array(r["actions"]) for r in fails])
    labels = action_label(errors, clearance)
    moves = np.abs(labels[:, :2]) > 1e-9  # (steps, 2) the label moves this axis
    size = np.abs(actions[:, :2])
    wrong = (np.sign(actions[:, :2]) != np.sign(labels[:, :2])) & (size > stay_mm)
    stay = size <= stay_mm
    out.update({
        "failed_end_outside_box": int((np.abs(end[:, :2]) > clearance / 2).any(axis=1).sum()),
        "failed_start_distance_mm_median": float(np.median(np.hypot(start[:, 0], start[:, 1]))),
        "failed_end_distance_mm_median": float(np.median(np.hypot(end[:, 0], end[:, 1]))),
        "failed_end_abs_rz_deg_median": float(np.median(np.abs(end[:, 2]))),
        "failed_steps": len(actions),
        "where_label_moves_xy": {"answers": int(moves.sum()), "wrong_sign": float(wrong[moves].mean()),
                                 "stay": float(stay[moves].mean()),
                                 "right_sign": float((~wrong & ~stay)[moves].mean())},
        "rz_near_cap": float(np.mean(np.abs(actions[:, 2]) >= 0.95 * rz_cap)),
    })
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("records", type=Path, nargs="+", help="records.jsonl of `tla eval closed-loop`")
    args = ap.parse_args()
    from tla.sim.config import LabelConfig

    rz_cap = LabelConfig().rz_cap
    result = {}
    for path in args.records:
        groups = defaultdict(list)
        for line in path.read_text().splitlines():
            r = json.loads(line)
            groups[f"{r['shape']} {r['clearance']:g} mm{' ' + r['condition'] if r.get('condition') else ''}"].append(r)
        result[str(path)] = {k: breakdown(v, rz_cap) for k, v in groups.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
