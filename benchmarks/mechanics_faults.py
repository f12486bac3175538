"""Re-measure the four contact-mechanics quantities checked against an independent rigid-body model.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mechanics_faults.py

Square 10 mm peg, clearance 2.0 mm, 45-degree chamfer, nominal (un-randomised) parameters. Prints one
JSON object:
  first_frame_rim_force_ex1.8   vertical rim load (N, friction included) at t0 for ex = 1.8 mm
  corner_liftoff_um_ex1.8       height of the leading peg corner above the chamfer surface at t0 (um;
                                elastic rim penetration counts as on the surface, so 0 = in contact)
  peak_vertical_rim_force       max over poses and frames of the total vertical rim force (N), with
  pad_capacity                  mu_pad x total grip force (N)
  rocking_pure_ey_deg           tilt about x per frame for ey = 2.0 mm (deg; t0 sticks, t3 slips)
  tilt_x_erz_pose_deg           tilt about x per frame at (ex, ey, erz) = (1.0, 0, 3 deg)
  tilt_z_erz_pose_deg           twist about z per frame at the same pose
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from tla.config import apply_overrides
from tla.sim import SimConfig, simulate_attempt
from tla.sim.mechanics import cross

NOMINAL = apply_overrides(SimConfig(), ["randomize.enabled=false"])
POSES = [(1.8, 0.0, 0.0), (0.0, 2.0, 0.0), (1.0, 0.0, 3.0), (2.0, 2.0, 2.0), (2.2, 0.3, 2.0), (1.6, 0.7, 2.5),
         (0.3, 1.9, -3.0), (2.4, 0.0, 0.0), (0.0, 2.4, 0.0), (1.5, 1.5, -4.0)]


def run(error):
    return simulate_attempt(NOMINAL, "square", 2.0, error, np.random.default_rng(0), render=False)


def vertical_rim_force(res) -> np.ndarray:
    """Total vertical force of the rim on the peg per frame (normal and friction parts)."""
    if "rim_wrench" in res.physics:
        return res.physics["rim_wrench"][:, 2]
    # older mechanics: the stick solve's equilibrium K q = rim wrench
    from tla.sim import geometry as geo
    from tla.sim.mechanics import build_grasp

    g, rc, gel = NOMINAL.geometry, NOMINAL.render, NOMINAL.gel
    peg = geo.peg_polygon("square", g.peg_size)
    strips = [geo.pad_contact_strip(peg, s, g.grip_indentation_width, g.min_contact_width) for s in (1, -1)]
    grasp = build_grasp(strips, geo.pad_planes(peg), g.contact_height, gel.grip_force, gel.E, gel.nu,
                        gel.thickness, gel.normal_stiffening, rc.pad_width_mm, rc.pad_height_mm, rc.grid_pitch_mm)
    return (res.physics["q"] @ grasp.K.T)[:, 2]


def corner_liftoff_um(res, descent: float) -> float:
    """Height (um) of the highest-x contact point above the rim surface at t0, net of Winkler penetration."""
    from tla.sim import geometry as geo

    g = NOMINAL.geometry
    fp = geo.footprint(geo.peg_polygon("square", g.peg_size), [1.8, 0.0, 0.0])
    pts, areas, heights, normals = geo.contact_points(fp, geo.hole_polygon("square", 2.0, g.peg_size), g.chamfer)
    r = res.physics["contact_points"]
    q = res.physics["q"][0]
    w = q[:3] + cross(q[3:], r) - np.array([0.0, 0.0, descent])  # motion of each point vs the hole
    gaps = heights.max() - heights
    normal_gap = gaps * normals[:, 2] + (w * normals).sum(1)
    i = int(np.argmax(pts[:, 0]))
    fn = res.physics["rim_forces"][0, i]
    k = NOMINAL.gel.rim_stiffness * areas[i]
    return float((normal_gap[i] + fn / k) / normals[i, 2] * 1e3)


def main() -> dict:
    s0 = NOMINAL.motion.descent_per_frame
    a = run([1.8, 0.0, 0.0])
    out = {
        "first_frame_rim_force_ex1.8": float(vertical_rim_force(a)[0]),
        "corner_liftoff_um_ex1.8": corner_liftoff_um(a, s0),
    }
    peaks = {str(p): float(vertical_rim_force(run(list(p))).max()) for p in POSES}
    out["peak_vertical_rim_force"] = max(peaks.values())
    out["peak_vertical_rim_force_per_pose"] = peaks
    out["pad_capacity"] = NOMINAL.gel.mu_pad * 2 * NOMINAL.gel.grip_force
    ey = run([0.0, 2.0, 0.0])
    out["rocking_pure_ey_deg"] = np.degrees(ey.physics["q"][:, 3]).tolist()
    out["gross_slip_pure_ey_mm"] = ey.physics["gross_slip"].tolist()
    e = run([1.0, 0.0, 3.0])
    out["tilt_x_erz_pose_deg"] = np.degrees(e.physics["q"][:, 3]).tolist()
    out["tilt_y_erz_pose_deg"] = np.degrees(e.physics["q"][:, 4]).tolist()
    out["tilt_z_erz_pose_deg"] = np.degrees(e.physics["q"][:, 5]).tolist()
    out["ex1.8_q_t0"] = a.physics["q"][0].tolist()
    out["ex1.8_gross_slip_mm"] = a.physics["gross_slip"].tolist()
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
