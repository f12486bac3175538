"""Quasi-static mechanics of a failed attempt: compliant grasp, frictional rim contact, pad slip.

Frames: the gripper origin is the centre of the pads ("grasp centre"), x along the pads, y toward the
left pad, z up; the peg's rigid motion relative to the gripper is q = (u, theta) (mm, rad), small.

1. Grasp stiffness K (6x6): the two gel pads are distributed springs over their contact patches, per
   unit area k_t = G / t tangentially and k_n = kappa E / t normally (thin bonded layer).
2. Rim contact: after first contact the gripper descends by s. Each support point i of the contact
   region (rim height h_i <= 0, surface normal n_i: vertical on the flat top, tilted on the chamfer) may
   not go below the rim. Contact forces lie in polyhedral Coulomb cones (mu_rim) on a stiff Winkler rim.
   The equilibrium K q = sum of contact wrenches is solved as Anitescu's convex QP (dual NNLS, active
   set, compiled), made exact Coulomb by a fixed point: each gap is raised by mu x the point's sliding
   distance (so sliding points stay on the surface instead of rising off it) and each cone is turned so
   that a sliding point's friction is exactly opposite its sliding. The total vertical rim force (normal
   and friction parts) never exceeds what the pads hold by friction (mu_pad x total grip force): beyond
   it the descent is cut back to where the load equals that capacity, the rest is slip through the pads.
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


@numba.njit(cache=True, nogil=True)
def _nnls_qp(A, b, beta):  # pragma: no cover (compiled)
    """min 1/2 x^T A x - b^T x over x >= 0 (A symmetric positive definite), Lawson-Hanson active set,
    warm-started from `beta` (overwritten with the solution). The rim problems have <= ~50 unknowns."""
    n = len(b)
    free = beta > 0
    z = np.zeros(n)
    for _ in range(6 * n + 20):
        # solve on the free set, then step back toward feasibility while some free x would go negative
        for _inner in range(n + 1):
            idx = np.nonzero(free)[0]
            z[:] = 0.0
            if len(idx):
                sub = np.linalg.solve(A[idx][:, idx], b[idx])
                for k in range(len(idx)):
                    z[idx[k]] = sub[k]
            alpha, blocked = 1.0, False
            for k in idx:
                if z[k] <= 1e-15:
                    blocked = True
                    den = beta[k] - z[k]
                    a = beta[k] / den if den > 0 else 0.0
                    alpha = min(alpha, a)
            if not blocked:
                beta[:] = z
                break
            for k in range(n):
                beta[k] += alpha * (z[k] - beta[k])
                if free[k] and beta[k] <= 1e-15:
                    beta[k], free[k] = 0.0, False
        # optimality: the multipliers of the bound x_j >= 0 must be non-negative
        grad = A @ beta - b
        j, best = -1, -1e-12 * (1.0 + np.abs(b).max())
        for k in range(n):
            if not free[k] and grad[k] < best:
                j, best = k, grad[k]
        if j < 0:
            break
        free[j] = True
    return beta


@numba.njit(cache=True, nogil=True)
def _rim_solve(K_inv, normals, t1, t2, points, gap_n, compliance, sides, s, mu, sigma, phase, beta, max_iter=40, relax=0.5):  # pragma: no cover
    """Exact-Coulomb rim equilibrium at descent s -> (q (6,), force vectors (m, 3)).

    Each point's force is a non-negative combination beta of the `sides` edges n + mu d_k of a polyhedral
    cone; the equilibrium K q = sum of contact wrenches is Anitescu's convex QP (its dual an NNLS), which
    lets a sliding point rise off the surface by mu x its sliding distance. Two fixed-point corrections
    make it Coulomb's law: the normal gap is raised by mu x sigma_i, sigma_i the sliding distance measured
    by the cone's support function (De Saxce's bipotential form: a sliding point then keeps its normal
    gap equal to its elastic rim penetration, neither lifting off nor sinking in), and each cone is turned
    so that an edge points against the point's sliding (the friction force of a sliding point is then
    exactly mu f_n opposite to its sliding, whatever its direction). `sigma`, `phase` and `beta` are warm
    starts, overwritten."""
    m = len(points)
    ne = m * sides
    dirs, edges, G = np.empty((ne, 3)), np.empty((ne, 3)), np.empty((ne, 6))
    b = np.empty(ne)
    q = np.zeros(6)
    for it in range(max_iter):
        # plain fixed-point steps, then under-relaxed ones that shrink: a contact set that flips between
        # two states (a 2-cycle of the plain iteration) settles on their balance point
        omega = 1.0 if it < 8 else relax / (1.0 + 0.3 * (it - 8))
        for i in range(m):
            for k in range(sides):
                j = i * sides + k
                a = phase[i] + 2 * np.pi * k / sides
                ca, sa = np.cos(a), np.sin(a)
                for c in range(3):
                    dirs[j, c] = ca * t1[i, c] + sa * t2[i, c]
                    edges[j, c] = normals[i, c] + mu * dirs[j, c]
                r, e = points[i], edges[j]
                G[j, 0], G[j, 1], G[j, 2] = e[0], e[1], e[2]
                G[j, 3] = r[1] * e[2] - r[2] * e[1]
                G[j, 4] = r[2] * e[0] - r[0] * e[2]
                G[j, 5] = r[0] * e[1] - r[1] * e[0]
                b[j] = s * e[2] - gap_n[i] - mu * sigma[i]
        KinvGt = K_inv @ G.T
        A = G @ KinvGt
        for j in range(ne):
            A[j, j] += compliance[j // sides]
        _nnls_qp(A, b, beta)
        q = KinvGt @ beta
        change = 0.0
        for i in range(m):
            r = points[i]
            w0 = q[0] + q[4] * r[2] - q[5] * r[1]  # point motion u + theta x r, minus the descent
            w1 = q[1] + q[5] * r[0] - q[3] * r[2]
            w2 = q[2] + q[3] * r[1] - q[4] * r[0] - s
            sl = 0.0
            for k in range(sides):
                j = i * sides + k
                v = -(dirs[j, 0] * w0 + dirs[j, 1] * w1 + dirs[j, 2] * w2)
                sl = max(sl, v)
            # turn the cone so that its first edge opposes the sliding of a loaded, sliding point
            a1 = -(t1[i, 0] * w0 + t1[i, 1] * w1 + t1[i, 2] * w2)
            a2 = -(t2[i, 0] * w0 + t2[i, 1] * w1 + t2[i, 2] * w2)
            # a point slides when its force lies on the cone's surface: one edge or two adjacent ones
            n_act, k0, k1 = 0, -1, -1
            for k in range(sides):
                if beta[i * sides + k] > 1e-12:
                    n_act += 1
                    if k0 < 0:
                        k0 = k
                    k1 = k
            on_face = n_act == 1 or (n_act == 2 and (k1 - k0 == 1 or (k0 == 0 and k1 == sides - 1)))
            if on_face and a1 * a1 + a2 * a2 > 1e-12:
                new = np.arctan2(a2, a1)
                d = (new - phase[i] + np.pi) % (2 * np.pi) - np.pi
                change = max(change, abs(d) * np.sqrt(a1 * a1 + a2 * a2))
                phase[i] += omega * d
            change = max(change, abs(sl - sigma[i]))
            sigma[i] += omega * (sl - sigma[i])
        if omega * change < 1e-6:
            break
    f = np.zeros((m, 3))
    for j in range(ne):
        for c in range(3):
            f[j // sides, c] += beta[j] * edges[j, c]
    return q, f, it, change


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Peg motion q (T, 6), normal rim forces (T, m), vertical rim load (T,) and rim wrench (T, 6: force,
    moment about the grasp centre) per gripper descent s_t.

    points (m, 3) in the grasp frame with their contact areas (m,), normals (m, 3) unit, gaps (m,) >= 0
    initial vertical gaps. The rim is a stiff Winkler foundation (`rim_stiffness` N/mm^3: each point is a
    spring of stiffness rim_stiffness x area), so the load spreads over the contact region. Each contact
    force is a non-negative combination of the edges n + mu d_j of a polyhedral Coulomb cone. Anitescu's
    convex relaxation (one QP, solved through its dual by an active-set NNLS) lets a sliding point rise
    off the surface by mu x its sliding distance; the exact Coulomb law is recovered by raising each
    point's gap by that amount and iterating to the fixed point (`_rim_solve`): sliding points then stay
    on the surface, stick, slide and lift-off all come out of it.
    `grip_capacity` (N) is the vertical load the pads can hold by friction (mu_pad x total grip force):
    the total vertical rim force (normal and friction parts) never exceeds it; beyond, the descent at
    which the load reaches the capacity is found (regula falsi) and the rest becomes slip of the peg
    through the pads (resolved in `pad_fields`).
    """
    m = len(points)
    t1, t2 = _tangent_basis(normals)
    K_inv = np.linalg.inv(K)
    compliance = 1.0 / (rim_stiffness * areas)
    gap_n = gaps * normals[:, 2]
    pts = np.ascontiguousarray(points, dtype=np.float64)
    nz = np.ascontiguousarray(normals, dtype=np.float64)
    sigma, phase, beta = np.zeros(m), np.zeros(m), np.zeros(m * cone_sides)

    def equilibrium(s: float):  # a function of s alone (cold start), so the capacity search is consistent
        sigma[:], phase[:], beta[:] = 0.0, 0.0, 0.0
        q, f, _, _ = _rim_solve(K_inv, nz, t1, t2, pts, gap_n, compliance, cone_sides, float(s), mu_rim, sigma, phase, beta)
        return q, f, float(f[:, 2].sum())

    qs, betas, loads = [], [], []
    s_lo, load_lo = 0.0, 0.0  # the capacity is reached at a descent above s_lo (the load grows with s)
    for s in descents:
        q, bt, load = equilibrium(s)
        if load > grip_capacity:  # the pads cannot hold more: find the descent where the load reaches it
            lo, flo, hi, fhi = s_lo, load_lo - grip_capacity, float(s), load - grip_capacity
            best, side = None, 0
            for _ in range(30):  # Illinois regula falsi; keep the last iterate below the capacity
                sm = (lo * fhi - hi * flo) / (fhi - flo)
                qm, bm, lm = equilibrium(sm)
                fm = lm - grip_capacity
                if fm <= 0:
                    best, best_s = (qm, bm, lm), sm
                    if fm > -1e-4 * grip_capacity:
                        break
                    lo, flo = sm, fm
                    fhi, side = (fhi / 2 if side == -1 else fhi), -1
                else:
                    hi, fhi = sm, fm
                    flo, side = (flo / 2 if side == 1 else flo), 1
            if best is None:
                best, best_s = equilibrium(lo), lo
            q, bt, load = best
            s_lo, load_lo = best_s, load
        else:
            s_lo, load_lo = float(s), load
        qs.append(q)
        betas.append(bt)
        loads.append(load)
    fvec = np.array(betas).reshape(len(qs), m, 3)  # (T, m, 3) force vectors on the peg
    wrench = np.concatenate([fvec.sum(1), cross(pts[None], fvec).sum(1)], axis=1)
    return np.array(qs), (fvec * normals).sum(-1), np.array(loads), wrench


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
