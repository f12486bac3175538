"""Simulator configuration: geometry, gel mechanics, motion, rendering and domain randomisation.

Units: mm, degrees, newtons, MPa (= N/mm^2). Every value is a config field; ranges `(lo, hi)` are the
domain-randomisation intervals sampled per attempt when `randomize.enabled` (nominal values otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GeometryConfig:
    peg_size: float = 10.0  # minimum width across (square side, hexagon across flats, round diameter, ...)
    circle_segments: int = 64  # a round peg is a fine regular polygon
    chamfer: float = 1.5  # 45-degree lead-in chamfer on the hole edge (mm); 0 = sharp. Makes rz errors felt
    insert_area_tol: float = 1e-3  # mm^2 of footprint allowed outside the hole ("touching" counts as in)
    peg_below_grasp: float = 14.0  # distance from the pad centre down to the peg tip (lever arm)
    contact_height: float = 14.0  # vertical extent of the peg-pad contact patch
    grip_indentation_width: float = 0.5  # depth used to measure the contact strip width on curved sides
    min_contact_width: float = 1.0  # a vertex against a pad still makes a strip this wide


@dataclass(frozen=True)
class GelConfig:
    E: float = 0.25  # Young's modulus (MPa)
    nu: float = 0.47  # Poisson ratio
    thickness: float = 3.0  # elastomer layer (mm)
    normal_stiffening: float = 2.0  # thin bonded layer: normal modulus ~ this x E (partial confinement)
    mu_pad: float = 1.0  # pad-peg friction
    mu_rim: float = 0.4  # rim-peg friction
    grip_force: float = 2.5  # per pad (N)
    rim_stiffness: float = 200.0  # N/mm^3: Winkler foundation of the (nearly rigid) rim contact


@dataclass(frozen=True)
class MotionConfig:
    frames: int = 4  # t = 0..3 after first contact
    descent_per_frame: float = 0.3  # gripper travel per frame after first contact (mm)


@dataclass(frozen=True)
class RenderConfig:
    height: int = 240
    width: int = 320
    pad_height_mm: float = 18.0  # sensing area (z extent), maps to `height`
    pad_width_mm: float = 24.0  # sensing area (x extent), maps to `width`
    grid_pitch_mm: float = 0.75  # coarse mechanics / field grid
    kernel_sigma: float = 0.6  # elastic spreading length, in units of gel thickness
    marker_pitch: float = 1.2
    marker_radius: float = 0.28
    marker_jitter: float = 0.05  # mm, random offset of each marker from the grid
    marker_darkness: float = 0.75
    shading_gain: float = 4.0  # brightness change per unit slope of the indented surface
    light_dir: tuple[float, float] = (0.35, 0.94)  # (x, z) in-plane direction of the key light
    background_rgb: tuple[float, float, float] = (205.0, 208.0, 214.0)
    led_gradient: float = 0.18  # brightness falloff across the pad (LED on one edge)
    noise_std: float = 2.0  # grey levels


@dataclass(frozen=True)
class RandomizeConfig:
    enabled: bool = True
    E: tuple[float, float] = (0.18, 0.35)
    nu: tuple[float, float] = (0.45, 0.49)
    thickness: tuple[float, float] = (2.6, 3.4)
    mu_pad: tuple[float, float] = (0.8, 1.2)
    mu_rim: tuple[float, float] = (0.3, 0.5)
    grip_force: tuple[float, float] = (1.8, 3.2)
    descent_per_frame: tuple[float, float] = (0.2, 0.4)
    peg_offset_x: tuple[float, float] = (-1.0, 1.0)  # peg axis vs pad centre along x
    peg_below_grasp: tuple[float, float] = (12.0, 16.0)
    light_gain: tuple[float, float] = (0.88, 1.12)
    marker_pitch: tuple[float, float] = (1.1, 1.3)
    noise_std: tuple[float, float] = (1.0, 3.0)
    image_shift_px: float = 2.0  # marker grid / LED offset in pixels, uniform in [-v, v]


@dataclass(frozen=True)
class ErrorConfig:
    """Initial misalignment for data collection and evaluation episodes."""

    ex: float = 2.5  # mm, uniform in [-ex, ex]
    ey: float = 2.5
    erz: float = 5.0  # degrees


@dataclass(frozen=True)
class LabelConfig:
    delta: float = 1.0  # mm, cap on |dx|, |dy| per action
    rz_cap: float = 1.5  # degrees, cap on |drz|
    mode: str = "paper"  # "paper" (eq. 1-3: just inside the +-c/2 band) or "center" (toward zero error)


@dataclass(frozen=True)
class PerturbConfig:
    """Harder conditions for robustness trials (`tla.sim.perturb`); all off by default, so the default config
    renders and moves exactly as without them. Every draw comes from a substream of the attempt's Generator
    (its seed key plus a fixed tag), so a knob never shifts the draws of the rest of the attempt."""

    action_std: tuple[float, float, float] = (0.0, 0.0, 0.0)  # actuation noise: executed = commanded + N(0, std), mm, mm, deg
    pixel_noise_std: float = 0.0  # extra Gaussian pixel noise on the camera frames (grey levels)
    marker_noise_px: float = 0.0  # tracking noise on each displaced marker centre (px): what marker_flow reads
    mount_shift_px: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # sensor mounting offset of the gel image: left x, y, right x, y (px)
    mount_rot_deg: tuple[float, float] = (0.0, 0.0)  # sensor mounting rotation of the gel image about its centre: left, right (deg)
    stiffness_scale: float = 1.0  # gel stiffness drift: E (after the randomisation draw) times this
    occlusion: float = 0.0  # share of markers hidden (neither drawn nor tracked), drawn per pad per attempt


@dataclass(frozen=True)
class SimConfig:
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    gel: GelConfig = field(default_factory=GelConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    randomize: RandomizeConfig = field(default_factory=RandomizeConfig)
    errors: ErrorConfig = field(default_factory=ErrorConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    max_attempts: int = 15
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
