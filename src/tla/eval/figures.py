"""Pictures of the evaluation: Fig. 4 arrow plots and closed-loop trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tla.eval.offline import GoalTolerance, direction_correct
from tla.plotting import plt, save_figure

PAIRS = ((0, 1, "ex (mm)", "ey (mm)"), (0, 2, "ex (mm)", "erz (deg)"), (1, 2, "ey (mm)", "erz (deg)"))


def arrow_plot(errors, actions, labels, out: str | Path, title: str = "", tol: GoalTolerance = GoalTolerance(),
               max_arrows: int = 400) -> Path:
    """Fig. 4: an arrow from each sample's pose error along the predicted action, for the x-y, x-rz and
    y-rz pairs; green where both axes of the pair move the right way, red otherwise."""
    errors, actions, labels = (np.asarray(x, float).reshape(-1, 3) for x in (errors, actions, labels))
    keep = np.arange(len(errors))[:max_arrows]
    right = direction_correct(actions, labels, tol)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (i, j, xl, yl) in zip(axes, PAIRS):
        ok = right[keep, i] & right[keep, j]
        for mask, colour, name in ((ok, "tab:green", "correct"), (~ok, "tab:red", "wrong")):
            idx = keep[mask]
            ax.quiver(errors[idx, i], errors[idx, j], actions[idx, i], actions[idx, j], color=colour,
                      angles="xy", scale_units="xy", scale=1, width=0.003, label=f"{name} ({mask.mean():.0%})")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)


def trajectory_plot(records, out: str | Path, per_condition: int = 3) -> Path:
    """A few closed-loop episodes in the x-y plane: start, each correction, success or failure."""
    conditions = sorted({(r.shape, r.clearance) for r in records})
    fig, axes = plt.subplots(1, len(conditions), figsize=(4 * len(conditions), 4), squeeze=False)
    for ax, (shape, c) in zip(axes[0], conditions):
        recs = [r for r in records if r.shape == shape and r.clearance == c][:per_condition]
        for r in recs:
            e = np.array(r.errors)
            ax.plot(e[:, 0], e[:, 1], "-o", ms=3, color="tab:green" if r.success else "tab:red")
            ax.plot(e[0, 0], e[0, 1], "ks", ms=4)
        ax.add_patch(plt.Rectangle((-c / 2, -c / 2), c, c, fill=False, ls="--", color="0.5"))
        ax.set_title(f"{shape}, {c:.1f} mm", fontsize=9)
        ax.set_xlabel("ex (mm)")
        ax.set_ylabel("ey (mm)")
        ax.set_aspect("equal")
    return save_figure(fig, out)
