"""Tactile peg-in-hole simulator: geometry, quasi-static mechanics, gel rendering, labels, Gym env.

`import tla.sim` is cheap: the names below load on first use (PEP 562), so code that needs one light
module of the package (the robot-side client reads `tla.sim.compose`) pulls in neither numba, scipy,
shapely nor gymnasium. The Gymnasium env registers itself when `tla.sim.env` is imported; without an import,
`gymnasium.make("tla.sim.env:TLA/PegInHole-v0")` imports it first.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SimConfig": "tla.sim.config",
    "SHAPES": "tla.sim.geometry",
    "TRAIN_SHAPES": "tla.sim.geometry",
    "OOD_SHAPES": "tla.sim.geometry",
    "UnknownShapeError": "tla.sim.geometry",
    "inserts": "tla.sim.geometry",
    "action_label": "tla.sim.labels",
    "sample_initial_error": "tla.sim.labels",
    "AttemptResult": "tla.sim.simulator",
    "simulate_attempt": "tla.sim.simulator",
    "simulate_batch": "tla.sim.simulator",
    "PegInHoleEnv": "tla.sim.env",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tla.sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
