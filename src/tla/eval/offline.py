"""Offline evaluation (paper Tables I, II and Fig. 4): score predicted actions against test samples.

GCR (goal convergence rate): the share of samples for which the predicted action, applied to the sample's
true pose error, leaves the peg inside the goal region on all three axes:
|ex + dx| <= c/2 + eta, |ey + dy| <= c/2 + eta, |erz + drz| <= eta_rz.
L1 per axis (mm, mm, deg) between prediction and label, over the GCR samples (as in the paper) and over
all samples; per-axis direction accuracy (Fig. 4: the prediction moves the right way, or stays put within
tolerance when the label does); one-step insertion rate by the simulator's exact geometry; parse-failure
rate (TLA text that did not decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tla.policies.collapse import check_collapse
from tla.sim import geometry as geo

AXES = ("x", "y", "rz")


@dataclass(frozen=True)
class GoalTolerance:
    eta: float = 0.1  # mm beyond c/2
    eta_rz: float = 0.5  # degrees


def goal_reached(errors: np.ndarray, actions: np.ndarray, clearances: np.ndarray, tol: GoalTolerance) -> np.ndarray:
    """(N,) bool: the action brings the error inside the goal region on all three axes."""
    after = np.abs(np.asarray(errors) + np.asarray(actions))
    band = np.asarray(clearances, dtype=float) / 2 + tol.eta
    return (after[:, 0] <= band) & (after[:, 1] <= band) & (after[:, 2] <= tol.eta_rz)


def direction_correct(actions: np.ndarray, labels: np.ndarray, tol: GoalTolerance) -> np.ndarray:
    """(N, 3) bool: same sign as the label, or |action| within tolerance where the label is zero."""
    actions, labels = np.asarray(actions), np.asarray(labels)
    still = np.array([tol.eta, tol.eta, tol.eta_rz])
    zero = np.abs(labels) < 1e-9
    return np.where(zero, np.abs(actions) <= still, np.sign(actions) == np.sign(labels))


def one_step_inserts(errors, actions, clearances, shapes, size: float = 10.0, area_tol: float = 1e-3) -> np.ndarray:
    return np.array([
        geo.inserts(s, float(c), np.asarray(e) + np.asarray(a), size=size, area_tol=area_tol)
        for e, a, c, s in zip(errors, actions, clearances, shapes)
    ])


def offline_metrics(actions, labels, errors, clearances, shapes, parse_ok=None,
                    tol: GoalTolerance = GoalTolerance()) -> dict:
    actions, labels, errors = (np.asarray(x, dtype=float).reshape(-1, 3) for x in (actions, labels, errors))
    clearances = np.broadcast_to(np.asarray(clearances, dtype=float), (len(actions),))
    n = len(actions)
    if not (len(labels) == len(errors) == len(shapes) == n):
        raise ValueError(f"metric inputs disagree in length: {n} actions, {len(labels)} labels, "
                         f"{len(errors)} errors, {len(shapes)} shapes")
    goal = goal_reached(errors, actions, clearances, tol)
    l1 = np.abs(actions - labels)
    direction = direction_correct(actions, labels, tol)
    ok = np.ones(n, bool) if parse_ok is None else np.asarray(parse_ok, bool)
    out = {
        "samples": n,
        "gcr": float(goal.mean()) if n else float("nan"),
        "gcr_samples": int(goal.sum()),
        "one_step_insertion": float(one_step_inserts(errors, actions, clearances, shapes).mean()) if n else float("nan"),
        "parse_failure_rate": float(1 - ok.mean()) if n else float("nan"),
        "tolerance": {"eta_mm": tol.eta, "eta_rz_deg": tol.eta_rz},
        "collapse": check_collapse(actions).to_dict(),
    }
    for i, axis in enumerate(AXES):
        out[f"l1_{axis}_gcr"] = float(l1[goal, i].mean()) if goal.any() else float("nan")
        out[f"l1_{axis}_all"] = float(l1[:, i].mean()) if n else float("nan")
        out[f"direction_{axis}"] = float(direction[:, i].mean()) if n else float("nan")
    return out
