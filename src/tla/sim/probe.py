"""Information content of the tactile signal: linear probes of the error's sign per axis.

Simulates failed attempts (random misalignments, as in data collection), turns each observation into
features a sensor pipeline really has — the tracked marker displacements pooled over a coarse grid and
the pooled image brightness, for all 8 frames — and fits a ridge-regression linear classifier of
sign(ex), sign(ey), sign(erz) on one half, scoring the other half. Only samples whose error on that axis
is clearly outside the goal band count (|e| > c/2 + 0.2 mm, |erz| > 1 deg), as in the acceptance check.
"""

from __future__ import annotations

import cv2
import numpy as np

from tla.sim import geometry as geo
from tla.sim.config import SimConfig
from tla.sim.labels import sample_initial_error
from tla.sim.simulator import AttemptResult, simulate_attempt

POOL = (4, 6)  # rows x cols of the pooling grid over each sensor


def observation_features(res: AttemptResult, cfg: SimConfig) -> np.ndarray:
    """Pooled marker flow (2 x POOL) and pooled brightness (POOL) per frame, concatenated."""
    h, w = cfg.render.height, cfg.render.width
    gr, gc = POOL
    feats = []
    for i in range(res.frames.shape[0]):
        ref = res.markers_ref[i // 4]
        flow = res.markers_cur[i] - ref
        r = np.clip((ref[:, 1] / h * gr).astype(int), 0, gr - 1)
        c = np.clip((ref[:, 0] / w * gc).astype(int), 0, gc - 1)
        cell = r * gc + c
        counts = np.maximum(np.bincount(cell, minlength=gr * gc), 1)
        for k in range(2):
            feats.append(np.bincount(cell, flow[:, k], minlength=gr * gc) / counts)
        grey = cv2.cvtColor(res.frames[i], cv2.COLOR_RGB2GRAY)
        feats.append(cv2.resize(grey, (gc, gr), interpolation=cv2.INTER_AREA).ravel() / 255.0)
    return np.concatenate(feats)


def collect(cfg: SimConfig, n: int, shape: str = "square", clearance: float = 2.0, seed: int = 0):
    """n failed attempts at random misalignments: (features (n, F), errors (n, 3))."""
    rng = np.random.default_rng(seed)
    g = cfg.geometry
    X, E, i = [], [], 0
    while len(X) < n:
        e = sample_initial_error(rng, cfg.errors)
        i += 1
        if geo.inserts(shape, clearance, e, g.peg_size, g.insert_area_tol, g.circle_segments):
            continue
        res = simulate_attempt(cfg, shape, clearance, e, np.random.default_rng([seed, i]))
        X.append(observation_features(res, cfg))
        E.append(e)
    return np.array(X), np.array(E)


def ridge_sign_probe(X: np.ndarray, y: np.ndarray, train: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Fit w on the train rows (standardised with train statistics) and predict signs for all rows."""
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-9
    Z = (X - mu) / sd
    A = Z[train]
    w = np.linalg.solve(A.T @ A + alpha * len(A) * np.eye(A.shape[1]) / 100, A.T @ y[train])
    b = y[train].mean() - (A @ w).mean()
    return np.sign(Z @ w + b)


def sign_probe_accuracies(cfg: SimConfig | None = None, n: int = 2000, clearance: float = 2.0, seed: int = 0) -> dict:
    cfg = cfg or SimConfig()
    X, E = collect(cfg, n, clearance=clearance, seed=seed)
    train = np.zeros(len(X), bool)
    train[: len(X) // 2] = True
    thresholds = (clearance / 2 + 0.2, clearance / 2 + 0.2, 1.0)
    out = {"samples": len(X), "clearance": clearance}
    for axis, name in enumerate(("ex", "ey", "erz")):
        y = np.sign(E[:, axis])
        pred = ridge_sign_probe(X, y, train)
        test = ~train & (np.abs(E[:, axis]) > thresholds[axis])
        out[f"sign_{name}_accuracy"] = float((pred[test] == y[test]).mean())
        out[f"sign_{name}_test_samples"] = int(test.sum())
    return out
