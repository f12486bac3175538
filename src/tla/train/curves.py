"""Training curves of a run: loss per logged step and validation loss / L1, from train_log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from tla.plotting import plt, save_figure


def plot_training(run_dir: str | Path, out: str | Path | None = None) -> Path | None:
    """Write `train_curves.png` (left: train and validation loss; right: validation L1 per axis)."""
    run_dir = Path(run_dir)
    log = run_dir / "train_log.jsonl"
    if not log.exists():
        return None
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r and r.get("split") != "val"]
    val = [r for r in rows if r.get("split") == "val"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train")
    if val:
        a.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
        for axis in ("x", "y", "rz"):
            key = f"val_l1_{axis}"
            if key in val[0]:
                b.plot([r["step"] for r in val], [r[key] for r in val], "o-", label=f"L1 {axis}")
    a.set_xlabel("optimizer step")
    a.set_ylabel("loss")
    a.set_yscale("log")
    a.legend()
    b.set_xlabel("optimizer step")
    b.set_ylabel("validation L1 (mm, mm, deg)")
    if val:
        b.legend()
    fig.suptitle(run_dir.name)
    return save_figure(fig, out or run_dir / "train_curves.png")
