"""Preview sheet of one attempt: the 8 frames, the 3x3 composite, and a top view of the contact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tla.plotting import plt, save_figure
from tla.sim import geometry as geo
from tla.sim.compose import NUM_STEPS, PAD_NAMES, frame_index, make_composite
from tla.sim.config import SimConfig
from tla.sim.simulator import AttemptResult


def _fill(ax, geom, **kw):
    for g in getattr(geom, "geoms", [geom]):
        if g.is_empty or g.geom_type != "Polygon":
            continue
        x, y = g.exterior.xy
        ax.fill(x, y, **kw)


def draw_top_view(ax, cfg: SimConfig, result: AttemptResult) -> None:
    g = cfg.geometry
    peg = geo.peg_polygon(result.shape, g.peg_size, g.circle_segments)
    hole = geo.hole_polygon(result.shape, result.clearance, g.peg_size, g.circle_segments)
    fp = geo.footprint(peg, result.error)
    outer = hole.buffer(g.chamfer, join_style="mitre", mitre_limit=10.0) if g.chamfer > 0 else hole
    _fill(ax, outer.buffer(3, join_style="mitre"), color="0.85")
    if g.chamfer > 0:
        _fill(ax, outer, color="0.7")
    _fill(ax, hole, color="white")
    ax.plot(*hole.exterior.xy, color="k", lw=1)
    ax.plot(*fp.exterior.xy, color="tab:blue", lw=1.5, label="peg footprint")
    region = geo.contact_region(fp, hole)
    if not region.is_empty:
        _fill(ax, region, color="tab:red", alpha=0.6, label="rim contact")
    pts = result.physics.get("contact_points")
    if pts is not None and len(pts):
        forces = result.physics["rim_forces"][-1]
        ax.scatter(*_to_hole_frame(result, pts), s=10 + 40 * forces / max(forces.max(), 1e-9), c="darkred", zorder=3)
    ax.set_aspect("equal")
    ax.set_title("top view (hole frame, mm)", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    ax.plot([0], [0], "k+")


def _to_hole_frame(result: AttemptResult, pts_grasp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ox = result.params["peg_offset_x"]
    xy = pts_grasp[:, :2] + np.array([ox, 0.0])
    c, s = np.cos(np.radians(result.error[2])), np.sin(np.radians(result.error[2]))
    xy = xy @ np.array([[c, s], [-s, c]]) + result.error[:2]
    return xy[:, 0], xy[:, 1]


def preview_sheet(cfg: SimConfig, result: AttemptResult, out: str | Path) -> Path:
    """Write a PNG: frames (left row, right row), composite, top view and the attempt's numbers."""
    fig = plt.figure(figsize=(17, 5.4))
    grid = fig.add_gridspec(2, 6, width_ratios=[1, 1, 1, 1, 1.6, 1.6])
    ex, ey, erz = result.error
    dx, dy, drz = result.label
    title = (f"{result.shape} peg, clearance {result.clearance:.1f} mm | error ex={ex:+.2f} mm ey={ey:+.2f} mm "
             f"erz={erz:+.2f} deg | label dx={dx:+.2f} dy={dy:+.2f} drz={drz:+.2f}")
    if result.inserted:
        title += " | INSERTED: no contact, no sample"
    fig.suptitle(title, fontsize=11)
    if result.frames is not None:
        for pad in range(2):
            for t in range(NUM_STEPS):
                ax = fig.add_subplot(grid[pad, t])
                ax.imshow(result.frames[frame_index(pad, t)])
                stick = result.physics["stick_ratio"][t, pad]
                ax.set_title(f"{PAD_NAMES[pad]} t{t} (stick {stick:.0%})", fontsize=8)
                ax.axis("off")
        ax = fig.add_subplot(grid[:, 4])
        ax.imshow(make_composite(result.frames, 616))
        ax.set_title("3x3 composite (L0 L1 L2 / L3 R0 R1 / R2 R3 -)", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[:, 5])
    draw_top_view(ax, cfg, result)
    return save_figure(fig, out, dpi=80)
