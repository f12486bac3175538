"""Quasi-static mechanics of a failed attempt: compliant grasp, frictional rim contact, pad slip.

Frames: the gripper origin is the centre of the pads ("grasp centre"), x along the pads, y toward the
left pad, z up; the peg's rigid motion relative to the gripper is q = (u, theta) (mm, rad), small.

1. Grasp stiffness K (6x6): the two gel pads are distributed springs over their contact patches, per
   unit area k_t = G / t tangentially and k_n = kappa E / t normally (thin bonded layer).
2. Rim contact: after first contact the gripper descends by s. Each support point i of the contact
   region (rim height h_i <= 0, surface normal n_i: vertical on the flat top, tilted on the chamfer) may
   not go below the rim. Contact forces lie in polyhedral Coulomb cones (mu_rim); the equilibrium
   K q = sum of contact wrenches is one strictly convex QP (Anitescu's relaxation, a stiff Winkler rim),
   solved exactly through its dual by non-negative least squares: stick, sliding and lift-off all come
   out of it. The rim load never exceeds what the pads hold by friction (mu_pad x total grip force).
3. Pads: each pad point follows the peg, d = u + theta x r. Normal motion changes the pressure
   (grip profile + k_n d_n); tangential traction k_t (d_t - slip) is capped by mu_pad p with a return
   mapping, so the slip field carries history from frame to frame: stick, then partial slip at the
   low-pressure patch edges, then gross slip. The peg's vertical travel through the pads is raised until
   the capped tractions carry the rim load, so partial slip softens the grasp and at the grip capacity
   the whole patch slides.
Simplification: rotations and lateral motion come from the stick solve; only the vertical travel sees
the softening by slip (it keeps each frame a few small exact solves).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy.optimize import nnls


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b over the last axis (np.cross is slow for the small arrays used here)."""
    return np.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                     a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                     a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


@dataclass
class Grasp:
    """The two pads' contact patches on a world-aligned coarse grid (pad 0 = left/+y, 1 = right/-y)."""

    xs: np.ndarray  # (gw,) grid x positions in the grasp frame (mm)
    zs: np.ndarray  # (gh,) grid z positions (mm), z up
    y_pads: np.ndarray  # (2,) pad planes
    mask: np.ndarray  # (2, gh, gw) contact patch
    p0: np.ndarray  # (2, gh, gw) grip pressure (MPa)
    k_t: float  # N/mm^3
    k_n: float
    dA: float  # mm^2 per grid cell
    K: np.ndarray  # (6, 6) grasp stiffness about the grasp centre

    points: np.ndarray  # (2, gh, gw, 3) positions of every grid point of both pads


def _stiffness(points: np.ndarray, k: np.ndarray, dA: float) -> np.ndarray:
    """Grasp stiffness K = dA sum_points J^T diag(k) J (6x6) of springs at `points` (N, 3) with
    per-axis stiffness k (3,), J the map q = (u, theta) -> u + theta x r."""
    x, y, z = points.T
    zero, one = np.zeros_like(x), np.ones_like(x)
    # rows of J per displacement axis: d_x = u_x + theta_y z - theta_z y, etc.
    rows = (
        np.column_stack([one, zero, zero, zero, z, -y]),
        np.column_stack([zero, one, zero, -z, zero, x]),
        np.column_stack([zero, zero, one, y, -x, zero]),
    )
    return dA * sum(ka * (r.T @ r) for ka, r in zip(k, rows))


@lru_cache(maxsize=64)
def _pad_grid(pad_width: float, pad_height: float, pitch: float, y_pads: tuple[float, float]):
    """Grid x and z positions, their meshgrid and the (2, gh, gw, 3) points of both pads (read-only)."""
    gw, gh = int(round(pad_width / pitch)), int(round(pad_height / pitch))
    xs = (np.arange(gw) + 0.5) * pitch - pad_width / 2
    zs = (np.arange(gh) + 0.5) * pitch - pad_height / 2
    X, Z = np.meshgrid(xs, zs)
    points = np.stack([np.stack([X, np.full_like(X, y), Z], -1) for y in y_pads], 0)
    for a in (xs, zs, X, Z, points):
        a.flags.writeable = False  # shared between attempts
    return xs, zs, X, Z, points


def build_grasp(
    strips: list[tuple[float, float]],
    y_pads: tuple[float, float],
    contact_height: float,
    grip_force: float,
    E: float,
    nu: float,
    thickness: float,
    normal_stiffening: float,
    pad_width: float,
    pad_height: float,
    pitch: float,
) -> Grasp:
    """Contact patches (centre x, half-width per pad; grasp frame), grip pressure and stiffness K.

    The grip pressure is bi-parabolic over each patch (highest in the middle, zero at the edges, like a
    rounded indenter), scaled so each pad carries `grip_force`; its low edges are where slip starts.
    """
    xs, zs, X, Z, points = _pad_grid(pad_width, pad_height, pitch, tuple(y_pads))
    gh, gw = X.shape
    b = contact_height / 2
    mask = np.zeros((2, gh, gw), bool)
    p0 = np.zeros((2, gh, gw))
    dA = pitch * pitch
    for k, (xc, a) in enumerate(strips):
        # Widen by half a cell so narrow strips still cover at least one grid column.
        xi = (X - xc) / (a + pitch / 2)
        zi = Z / b
        shape = np.clip(1 - xi**2, 0, None) * np.clip(1 - zi**2, 0, None)
        mask[k] = shape > 0
        p0[k] = grip_force * shape / (shape.sum() * dA)
    G = E / (2 * (1 + nu))
    k_t = G / thickness
    k_n = normal_stiffening * E / thickness
    K = _stiffness(points[mask], np.array([k_t, k_n, k_t]), dA)
    return Grasp(xs, zs, np.asarray(y_pads, float), mask, p0, k_t, k_n, dA, K, points)


def _tangent_basis(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit tangents per normal (m, 3) each, orthogonal to it and to each other."""
    ref = np.where(np.abs(normals[:, [0]]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t1 = cross(normals, ref)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    return t1, cross(normals, t1)


def solve_rim_contact(
    K: np.ndarray,
    points: np.ndarray,
    areas: np.ndarray,
    normals: np.ndarray,
    gaps: np.ndarray,
    descents: np.ndarray,
    mu_rim: float,
    rim_stiffness: float,
    grip_capacity: float,
    cone_sides: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peg motion q (T, 6), normal rim forces (T, m) and vertical rim load (T,) per gripper descent s_t.

    points (m, 3) in the grasp frame with their contact areas (m,), normals (m, 3) unit, gaps (m,) >= 0
    initial vertical gaps. The rim is a stiff Winkler foundation (`rim_stiffness` N/mm^3: each point is a
    spring of stiffness rim_stiffness x area), so the load spreads over the contact region. Frictional
    unilateral contact as one convex QP (Anitescu's relaxation): each contact force is a
    non-negative combination of the edges n + mu d_j of a polyhedral friction cone, and each edge's
    complementary constraint keeps the point on or above the rim. The dual is a non-negative least
    squares problem, so stick, slide and lift-off all come out of one exact solve per frame.
    `grip_capacity` (N) is the vertical load the pads can hold by friction (mu_pad x total grip force):
    the rim load never exceeds it; the rest of the descent becomes slip of the peg through the pads
    (resolved in `pad_fields`).
    """
    m = len(points)
    t1, t2 = _tangent_basis(normals)
    ang = 2 * np.pi * np.arange(cone_sides) / cone_sides
    dirs = np.cos(ang)[None, :, None] * t1[:, None] + np.sin(ang)[None, :, None] * t2[:, None]
    edges = (normals[:, None, :] + mu_rim * dirs).reshape(-1, 3)  # (m * sides, 3)
    owner = np.repeat(np.arange(m), cone_sides)
    K_inv = np.linalg.inv(K)
    G = np.hstack([edges, cross(points[owner], edges)])  # generator wrenches (force, moment) as rows
    compliance = np.repeat(1.0 / (rim_stiffness * areas), cone_sides)
    L = np.linalg.cholesky(G @ K_inv @ G.T + np.diag(compliance))

    def equilibrium(s: float) -> tuple[np.ndarray, np.ndarray]:
        b = s * edges[:, 2] - (gaps * normals[:, 2])[owner]
        beta, _ = nnls(L.T, np.linalg.solve(L, b))
        return K_inv @ (G.T @ beta), np.bincount(owner, beta, minlength=m)

    qs, forces, loads = [], [], []
    for s in descents:
        q, fn = equilibrium(s)
        load = float(fn @ normals[:, 2])
        if load > grip_capacity:  # the pads cannot hold more: the rim load stays at the grip capacity
            q, fn = equilibrium(s * grip_capacity / load)  # the load grows ~linearly with descent
            load = float(fn @ normals[:, 2])
        qs.append(q)
        forces.append(fn)
        loads.append(load)
    return np.array(qs), np.array(forces), np.array(loads)


@dataclass
class PadFields:
    """Per frame and pad, on the world-aligned coarse grid."""

    pressure: np.ndarray  # (T, 2, gh, gw) MPa
    traction: np.ndarray  # (T, 2, gh, gw, 2) tangential (x, z) MPa
    displacement: np.ndarray  # (T, 2, gh, gw, 2) elastic surface displacement (x, z) mm = traction / k_t
    indentation: np.ndarray  # (T, 2, gh, gw) mm = pressure / k_n
    slipping: np.ndarray  # (T, 2, gh, gw) bool, contact points at the friction cap
    stick_ratio: np.ndarray  # (T, 2) share of the contact patch still sticking
    gross_slip: np.ndarray  # (T,) extra vertical travel of the peg through the pads beyond the stick motion


@numba.njit(cache=True, nogil=True)
def _slip_frames(D, caps, targets, k_t, dA):  # pragma: no cover (compiled)
    """The history-dependent part of `pad_fields`, frame by frame: rigid motion D (T, N, 3) at each
    patch point, friction caps (T, N) and rim loads to carry (T,) -> tangential tractions (T, N, 2),
    which points slip (T, N) and the extra vertical travel delta per frame (T,). A compiled loop: the
    per-frame Newton steps on a few hundred points were dominated by numpy call overhead."""
    T, n = caps.shape
    tau = np.zeros((T, n, 2))
    slipping = np.zeros((T, n), np.bool_)
    gross = np.zeros(T)
    slip = np.zeros((n, 2))
    tx, tz0, tz = np.empty(n), np.empty(n), np.empty(n)
    for t in range(T):
        cap, target = caps[t], targets[t]
        for i in range(n):  # trial (elastic) tractions; the vertical one grows by k_t per mm of delta
            tx[i] = k_t * (D[t, i, 0] - slip[i, 0])
            tz0[i] = k_t * (D[t, i, 2] - slip[i, 1])
        delta = 0.0
        for _ in range(12):  # safeguarded Newton on delta: the load carried is piecewise linear in it
            carried, sticking = 0.0, 0
            for i in range(n):
                tz_i = tz0[i] + k_t * delta
                mag = np.sqrt(tx[i] * tx[i] + tz_i * tz_i)
                if mag <= cap[i]:
                    carried += tz_i
                    sticking += 1
                else:  # return mapping onto the friction cap
                    carried += tz_i * cap[i] / max(mag, 1e-12)
            excess = carried * dA - target
            if excess >= -1e-6 * max(target, 1.0) or sticking == 0:
                break
            delta += -excess / (k_t * dA * sticking)
        for i in range(n):
            tz[i] = tz0[i] + k_t * delta
            mag = np.sqrt(tx[i] * tx[i] + tz[i] * tz[i])
            scale = 1.0
            if mag > cap[i]:
                slipping[t, i] = True
                scale = cap[i] / max(mag, 1e-12)
            tau[t, i, 0], tau[t, i, 1] = tx[i] * scale, tz[i] * scale
            # points at the cap slide until their traction equals it; the slip is kept for the next frame
            slip[i, 0] = D[t, i, 0] - tau[t, i, 0] / k_t
            slip[i, 1] = D[t, i, 2] + delta - tau[t, i, 1] / k_t
        gross[t] = delta
    return tau, slipping, gross


def pad_fields(grasp: Grasp, qs: np.ndarray, loads: np.ndarray, mu_pad: float) -> PadFields:
    """Pressure, traction and slip on both pads for each frame, with slip history (return mapping).

    Each frame the peg's rigid motion q comes from the stick solve; its vertical translation is then
    increased by delta >= 0 until the pads' vertical traction carries the rim load: with partial slip
    the grasp is softer than the stick stiffness, and at the grip capacity every point slides (gross
    slip). delta is found by a safeguarded Newton iteration (the traction is piecewise linear in it).
    """
    mask = grasp.mask
    pts = grasp.points[mask]  # (N, 3) contact-patch points only
    side = np.where(pts[:, 1] > 0, 1.0, -1.0)  # moving +y presses the left pad and unloads the right
    p0 = grasp.p0[mask]
    T = len(qs)
    k_t, dA = grasp.k_t, grasp.dA
    # Everything but the slip is history-free: all frames at once.
    D = qs[:, None, :3] + cross(qs[:, None, 3:], pts[None])  # (T, N, 3) rigid motion of the peg at each point
    P = np.maximum(p0 + grasp.k_n * side * D[..., 1], 0.0)
    caps = mu_pad * P
    targets = np.minimum(loads, 0.999 * caps.sum(axis=1) * dA)
    tau_all, slipping_all, gross = _slip_frames(D, caps, targets, k_t, dA)
    shape = (T,) + mask.shape
    pressure, slipping = np.zeros(shape), np.zeros(shape, bool)
    traction = np.zeros(shape + (2,))
    pressure[:, mask], traction[:, mask], slipping[:, mask] = P, tau_all, slipping_all
    area = mask.sum(axis=(1, 2))
    return PadFields(
        pressure=pressure,
        traction=traction,
        displacement=traction / grasp.k_t,
        indentation=pressure / grasp.k_n,
        slipping=slipping,
        stick_ratio=1 - slipping.sum(axis=(2, 3)) / np.maximum(area, 1),
        gross_slip=gross,
    )
