"""Training curves of a run: loss per logged step and validation loss / L1, from train_log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from tla.plotting import plt, save_figure


def plot_training(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write `train_curves.png` (left: train and validation loss; right: validation L1 per axis, or the
    accuracy per question kind when the run logs `val_accuracy_<kind>`, as pretraining does)."""
    run_dir = Path(run_dir)
    log = run_dir / "train_log.jsonl"
    if not log.exists():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r and r.get("split") != "val"]
    val = [r for r in rows if r.get("split") == "val"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    # the right panel: validation L1 per axis (action policies) or accuracy per question kind (pretraining)
    accuracy = sorted(k for k in (val[0] if val else {}) if k.startswith("val_accuracy_"))
    if val:
        a.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
        keys = accuracy or [f"val_l1_{axis}" for axis in ("x", "y", "rz") if f"val_l1_{axis}" in val[0]]
        for key in keys:
            b.plot([r["step"] for r in val], [r.get(key, float("nan")) for r in val], "o-",
                   label=key.removeprefix("val_accuracy_") if accuracy else f"L1 {key.removeprefix('val_l1_')}")
    a.set_xlabel("optimizer step")
    a.set_ylabel("loss")
    a.set_yscale("log")
    a.legend()
    b.set_xlabel("optimizer step")
    b.set_ylabel("validation accuracy per question kind" if accuracy else "validation L1 (mm, mm, deg)")
    if val:
        b.legend()
    fig.suptitle(run_dir.name)
    return save_figure(fig, out or run_dir / "train_curves.png")


def plateau(run_dir: str | Path, key: str = "val_loss", tail: float = 0.25, tol: float = 0.03) -> dict | None:
    """Is the validation curve flat at the end? Compares the last validation `key` with its value at the
    start of the last `tail` of training: `flat` when it improved by less than `tol` (relative)."""
    log = Path(run_dir) / "train_log.jsonl"
    if not log.exists():
        return None
    val = [json.loads(line) for line in log.read_text().splitlines() if '"split": "val"' in line]
    val = [r for r in val if r.get(key) is not None]
    if len(val) < 2:
        return None
    last = val[-1]
    start = (1 - tail) * last["step"]
    ref = min(val, key=lambda r: abs(r["step"] - start))
    change = (last[key] - ref[key]) / max(abs(ref[key]), 1e-12)
    return {"metric": key, "first": val[0][key], "at_step": ref["step"], "ref": ref[key], "last": last[key],
            "last_step": last["step"], "change": change, "flat": change > -tol}
