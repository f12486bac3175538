"""One attempt of the peg-in-hole task: geometry -> mechanics -> two sensors x four frames.

`simulate_attempt(cfg, shape, clearance, error, rng)` is the single entry point; every random draw
(material, friction, grip, peg offset, lighting, markers, noise) comes from `rng`, so a Generator seeded
from (dataset seed, sample index) regenerates a sample bit-for-bit. `simulate_batch` runs many
attempts with per-attempt seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tla.sim import geometry as geo
from tla.sim import perturb
from tla.sim.compose import NUM_PADS
from tla.sim.config import SimConfig
from tla.sim.labels import action_label
from tla.sim.mechanics import build_grasp, pad_fields, solve_rim_contact
from tla.sim.render import (
    PadLook,
    camera_fields,
    marker_reference,
    render_frames,
    sample_markers,
    shading,
)


@dataclass
class AttemptResult:
    shape: str
    clearance: float
    error: np.ndarray  # (3,) ex, ey mm; erz deg
    label: np.ndarray  # (3,) dx, dy mm; drz deg (paper eq. 1-3)
    inserted: bool
    params: dict[str, float]
    frames: np.ndarray | None = None  # (8, H, W, 3) uint8, left t0..t3 then right t0..t3
    depth: np.ndarray | None = None  # (8, gh, gw) float32 surface indentation (mm), image axes
    shear: np.ndarray | None = None  # (8, gh, gw, 2) float32 surface displacement (u, v) (mm), image axes
    markers_ref: np.ndarray | None = None  # (2, M, 2) float32 reference marker centres (px) per pad
    markers_cur: np.ndarray | None = None  # (8, M, 2) float32 displaced marker centres (px) per frame
    physics: dict = field(default_factory=dict)  # q per frame, rim forces, stick ratios, contact points


def draw_params(cfg: SimConfig, rng: np.random.Generator) -> dict[str, float]:
    """Domain randomisation: one draw per parameter, in a fixed order (nominal values when disabled)."""
    r = cfg.randomize
    nominal = {
        "E": cfg.gel.E, "nu": cfg.gel.nu, "thickness": cfg.gel.thickness, "mu_pad": cfg.gel.mu_pad,
        "mu_rim": cfg.gel.mu_rim, "grip_force": cfg.gel.grip_force,
        "descent_per_frame": cfg.motion.descent_per_frame, "peg_offset_x": 0.0,
        "peg_below_grasp": cfg.geometry.peg_below_grasp, "light_gain": 1.0,
        "marker_pitch": cfg.render.marker_pitch, "noise_std": cfg.render.noise_std,
    }
    if r.enabled:  # one vectorised draw: the same stream, in the same order, as one draw per parameter
        ranges = np.array([getattr(r, name) for name in nominal], dtype=np.float64)
        params = dict(zip(nominal, rng.uniform(ranges[:, 0], ranges[:, 1]).tolist()))
    else:
        params = {name: float(value) for name, value in nominal.items()}
    shift = rng.uniform(-r.image_shift_px, r.image_shift_px, 2) if r.enabled else np.zeros(2)
    params["shift_x_px"], params["shift_y_px"] = float(shift[0]), float(shift[1])
    return params


def _rotate(xy: np.ndarray, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return xy @ np.array([[c, s], [-s, c]])


def simulate_attempt(
    cfg: SimConfig, shape: str, clearance: float, error, rng: np.random.Generator, render: bool = True
) -> AttemptResult:
    """Simulate one insertion attempt at pose error `error`; see AttemptResult."""
    g, rc = cfg.geometry, cfg.render
    geo.check_sim_shape(shape)
    error = np.asarray(error, dtype=np.float64).reshape(3)
    clearance = geo.check_clearance(clearance)
    if not np.isfinite(error).all():
        raise ValueError(f"pose error (ex mm, ey mm, erz deg) must be finite, got {error.tolist()}")
    params = draw_params(cfg, rng)
    perturb.drift_stiffness(cfg.perturb, params)  # gel stiffness drift (a no-op by default)
    label = action_label(error, clearance, cfg.labels)
    peg = geo.peg_polygon(shape, g.peg_size, g.circle_segments)
    hole = geo.hole_polygon(shape, clearance, g.peg_size, g.circle_segments)
    fp = geo.footprint(peg, error)
    result = AttemptResult(shape, float(clearance), error, label, False, params)
    region = geo.contact_region(fp, hole)  # footprint outside the hole
    if region.area <= g.insert_area_tol:
        result.inserted = True
        return result

    # Rim support points in the hole frame -> peg frame (undo the pose) -> grasp frame (pad centre).
    pts, areas, heights, normals = geo.contact_points(fp, hole, g.chamfer, region=region)
    ox, h = params["peg_offset_x"], params["peg_below_grasp"]
    p_peg = _rotate(pts - error[:2], -error[2])
    n_peg = np.column_stack([_rotate(normals[:, :2], -error[2]), normals[:, 2]])
    r = np.column_stack([p_peg[:, 0] - ox, p_peg[:, 1], np.full(len(p_peg), -h)])
    gaps = heights.max() - heights

    strips = []
    for side in (+1, -1):
        xc, half = geo.pad_contact_strip(peg, side, g.grip_indentation_width, g.min_contact_width)
        strips.append((xc - ox, half))
    grasp = build_grasp(
        strips, geo.pad_planes(peg), g.contact_height, params["grip_force"], params["E"], params["nu"],
        params["thickness"], cfg.gel.normal_stiffening, rc.pad_width_mm, rc.pad_height_mm, rc.grid_pitch_mm,
    )
    descents = params["descent_per_frame"] * (np.arange(cfg.motion.frames) + 1)
    qs, forces, loads, wrenches = solve_rim_contact(
        grasp.K, r, areas, n_peg, gaps, descents, params["mu_rim"], cfg.gel.rim_stiffness,
        grip_capacity=params["mu_pad"] * 2 * params["grip_force"],
    )
    fields = pad_fields(grasp, qs, loads, params["mu_pad"])
    result.physics = {
        "q": qs, "rim_forces": forces, "rim_load": loads, "rim_wrench": wrenches, "gross_slip": fields.gross_slip, "stick_ratio": fields.stick_ratio, "contact_points": r,
        "pressure": fields.pressure, "traction": fields.traction, "slipping": fields.slipping,
    }
    if render:
        _render(cfg, result, fields, params, rng)
    return result


def _render(cfg: SimConfig, result: AttemptResult, fields, params: dict, rng: np.random.Generator) -> None:
    """Fields -> 8 images. Coarse-grid work runs on all frames at once; only the full-resolution
    OpenCV passes run per frame."""
    rc = cfg.render
    sigma_cells = rc.kernel_sigma * params["thickness"] / rc.grid_pitch_mm
    depth, shear = camera_fields(fields.indentation, fields.displacement, sigma_cells)
    shade = shading(rc, depth)
    ppm = rc.width / rc.pad_width_mm
    disp_px = np.ascontiguousarray(shear * np.float32(ppm))
    # Both sensors are the same model: one jittered marker pattern per attempt, mirrored for the right pad.
    shift = np.array([params["shift_x_px"], params["shift_y_px"]])
    ref = marker_reference(rc, params["marker_pitch"], shift, rng)
    refs = [ref, np.column_stack([rc.width - 1 - ref[:, 0], ref[:, 1]]).astype(np.float32)]
    sensor = perturb.sensor_stream(cfg.perturb, rng)  # None (no draws) unless a sensor knob is on
    if sensor is not None:
        refs = perturb.occlude(cfg.perturb, refs, sensor)
    offsets = rng.integers(0, 32, (NUM_PADS * cfg.motion.frames, 2))
    look = PadLook.create(rc, params["light_gain"], params["noise_std"])
    # Frame order is pad-major (left t0..t3, right t0..t3): each frame samples its own pad's pattern.
    ref_per_frame = np.repeat(np.stack(refs), cfg.motion.frames, axis=0)
    cur = ref_per_frame + sample_markers(disp_px, ref_per_frame, rc.width / depth.shape[2])
    result.frames = render_frames(rc, look, shade, cur, offsets)
    result.depth, result.shear = depth, shear
    result.markers_ref = np.stack(refs)
    result.markers_cur = cur.astype(np.float32)
    if sensor is not None:  # mounting shift / rotation, pixel noise, marker tracking noise
        perturb.apply_sensor(cfg.perturb, result, rc, cfg.motion.frames, sensor)


def simulate_batch(
    cfg: SimConfig, shapes, clearances, errors, seeds, render: bool = True
) -> list[AttemptResult]:
    """Many attempts; attempt i draws its randomness from np.random.default_rng(seeds[i]) (an int or a
    tuple such as (dataset_seed, sample_index))."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1, 3)
    n = len(errors)
    shapes = [shapes] * n if isinstance(shapes, str) else list(shapes)
    clearances = np.broadcast_to(np.asarray(clearances, dtype=np.float64), (n,))
    if not (len(shapes) == len(seeds) == n):
        raise ValueError(f"batch sizes differ: {len(shapes)} shapes, {n} errors, {len(seeds)} seeds")
    return [
        simulate_attempt(cfg, s, float(c), e, np.random.default_rng(seed), render)
        for s, c, e, seed in zip(shapes, clearances, errors, seeds)
    ]
