"""Contact facts of a failed attempt, read off the simulator's mechanics: what a model may say about the
contact before it answers with an action ("contact reasoning", see `tla.data.text.encode_contact`).

The facts come from a physics-only run of the attempt with the nominal (un-randomised) parameters, at the
last frame of the descent:
- `rim`: where the peg lands on the rim: the direction, from the hole's centre, of the centroid of the
  footprint's part outside the hole, in eight 45-degree sectors ("+x", "+x+y", "+y", ... in the hole frame);
- `pad`: which gel pad presses harder (total normal force; "left" = the +y pad), "even" within 2%;
- `twist`: the peg's turn about z inside the grasp, "ccw" (positive, z up) or "cw", "none" below 0.01 deg.
A pose that inserts has no contact: `ContactFacts.none()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RIM_SIDES = ("+x", "+x+y", "+y", "-x+y", "-x", "-x-y", "-y", "+x-y")  # counter-clockwise from +x
PADS = ("left", "right", "even")
TWISTS = ("ccw", "cw", "none")
PAD_EVEN = 0.02  # relative difference of the pads' normal forces below which they press evenly
TWIST_NONE_DEG = 0.01


@dataclass(frozen=True)
class ContactFacts:
    rim: str | None  # one of RIM_SIDES; None: no contact (the attempt inserts)
    pad: str = "even"
    twist: str = "none"

    @classmethod
    def none(cls) -> ContactFacts:
        return cls(rim=None)


def rim_side(dx: float, dy: float) -> str:
    """The 45-degree sector of direction (dx, dy)."""
    sector = int(np.floor((np.degrees(np.arctan2(dy, dx)) + 22.5) / 45.0)) % 8
    return RIM_SIDES[sector]


@lru_cache(maxsize=1)
def _nominal():
    from tla.config import apply_overrides
    from tla.sim.config import SimConfig

    return apply_overrides(SimConfig(), ["randomize.enabled=false"])


@lru_cache(maxsize=65536)
def _facts(shape: str, clearance: float, error: tuple[float, float, float]) -> ContactFacts:
    from tla.sim import geometry as geo
    from tla.sim.simulator import simulate_attempt

    cfg = _nominal()
    g = cfg.geometry
    fp = geo.footprint(geo.peg_polygon(shape, g.peg_size, g.circle_segments), error)
    hole = geo.hole_polygon(shape, clearance, g.peg_size, g.circle_segments)
    region = geo.contact_region(fp, hole)
    if region.area <= g.insert_area_tol:
        return ContactFacts.none()
    c = region.centroid
    res = simulate_attempt(cfg, shape, clearance, np.asarray(error), np.random.default_rng(0), render=False)
    pressure = res.physics["pressure"][-1]  # (2, gh, gw) at the last frame; pad 0 = left (+y)
    left, right = float(pressure[0].sum()), float(pressure[1].sum())
    pad = "even" if abs(left - right) <= PAD_EVEN * max(left + right, 1e-12) / 2 else (
        "left" if left > right else "right")
    turn = float(np.degrees(res.physics["q"][-1, 5]))
    twist = "none" if abs(turn) < TWIST_NONE_DEG else ("ccw" if turn > 0 else "cw")
    return ContactFacts(rim=rim_side(c.x, c.y), pad=pad, twist=twist)


def contact_facts(shape: str, clearance: float, error) -> ContactFacts:
    """Facts of the attempt of `shape` with `clearance` (mm) at pose error (ex mm, ey mm, erz deg); cached
    (a physics-only attempt costs a few ms: a training epoch over 6k samples pays it once)."""
    e = np.asarray(error, dtype=np.float64).reshape(3)
    return _facts(str(shape), float(clearance), tuple(float(v) for v in e))
