"""The pad return mapping (`_slip_frames`) on hand-built cases: stick, partial slip, gross slip, history."""

import numpy as np

from tla.sim.mechanics import _slip_frames

K_T, DA = 2.0, 0.5


def _motion(n: int, dz: float, dx: float = 0.0, frames: int = 1) -> np.ndarray:
    D = np.zeros((frames, n, 3))
    D[..., 0], D[..., 2] = dx, dz
    return D


def test_a_sticking_patch_carries_the_elastic_traction_and_no_extra_travel():
    D = _motion(5, dz=0.1, dx=0.05)
    caps = np.full((1, 5), 10.0)  # far above the traction
    carried = 5 * K_T * 0.1 * DA
    tau, slipping, gross = _slip_frames(D, caps, np.array([carried]), K_T, DA)
    np.testing.assert_allclose(tau[0], np.tile([K_T * 0.05, K_T * 0.1], (5, 1)))
    assert not slipping.any() and gross[0] == 0.0


def test_partial_slip_raises_the_travel_until_the_load_is_carried_within_the_caps():
    n = 6
    D = _motion(n, dz=0.1)
    caps = np.array([[0.1, 0.15, 1.0, 1.0, 0.15, 0.1]])  # low-pressure edges slip first
    target = 0.9  # the edges alone hold 0.25: the middle must take the rest
    tau, slipping, gross = _slip_frames(D, caps, np.array([target]), K_T, DA)
    assert gross[0] > 0
    np.testing.assert_allclose(tau[0, :, 1].sum() * DA, target, rtol=1e-6)
    assert np.all(np.hypot(tau[0, :, 0], tau[0, :, 1]) <= caps[0] + 1e-12)
    np.testing.assert_array_equal(slipping[0], [True, True, False, False, True, True])
    # sticking points carry k_t x (motion + extra travel); slipping ones sit on their cap
    np.testing.assert_allclose(tau[0, 2:4, 1], K_T * (0.1 + gross[0]))
    np.testing.assert_allclose(tau[0, slipping[0], 1], caps[0, slipping[0]])


def test_slip_is_remembered_by_the_next_frame():
    n = 4
    D = _motion(n, dz=0.2, frames=2)
    D[1] = 0.0  # the peg comes back to its start: the slipped points now pull the other way
    caps = np.full((2, n), 0.1)
    tau, slipping, _ = _slip_frames(D, caps, np.array([0.0, -1.0]), K_T, DA)
    assert slipping[0].all()  # K_T * 0.2 = 0.4 > cap: everything slides in frame 0
    # frame 1: elastic trial K_T * (0 - slip) with slip = 0.2 - 0.1 / K_T = 0.15 -> -0.3, capped to -0.1
    np.testing.assert_allclose(tau[1, :, 1], -0.1)


# --- rim contact (`solve_rim_contact`): closed-form properties of Coulomb contact ---------------------

from tla.sim import geometry as geo
from tla.sim.mechanics import build_grasp, cross, solve_rim_contact

DESCENTS = 0.3 * np.arange(1, 5)


def _grasp():
    peg = geo.peg_polygon("square")
    strips = [geo.pad_contact_strip(peg, s, 0.5, 1.0) for s in (1, -1)]
    return build_grasp(strips, geo.pad_planes(peg), 14.0, 2.5, 0.25, 0.47, 3.0, 2.0, 24.0, 18.0, 0.75)


def _corner(erz_deg=0.0, y=0.0):
    """One peg corner at x = 5 mm on a 45-degree chamfer falling toward -x (the hole), turned by erz."""
    a = np.radians(erz_deg)
    n = np.array([[-np.cos(a), np.sin(a), 1.0]]) / np.sqrt(2)
    return np.array([[5.0, y, -14.0]]), np.array([1.0]), n, np.zeros(1)


def _point_motion(q, r, s):
    return q[:3] + cross(q[3:], r) - np.array([0.0, 0.0, s])


def test_a_corner_sliding_down_a_45_degree_chamfer_stays_on_it():
    # The relaxed (Anitescu) cone lifts a sliding point off by mu x its sliding distance (0.14 mm here);
    # Coulomb contact keeps it on the surface: normal gap = -elastic penetration f_n / (k a), within 1 um.
    grasp = _grasp()
    r, area, n, gaps = _corner()
    qs, fn, _, wrench = solve_rim_contact(grasp.K, r, area, n, gaps, DESCENTS, 0.4, 200.0, 1e9)
    for q, f, s in zip(qs, fn, DESCENTS):
        w = _point_motion(q, r[0], s)
        slide = np.linalg.norm(w - (w @ n[0]) * n[0])
        assert slide > 0.05  # it really slides
        assert abs(w @ n[0] + f[0] / 200.0) < 1e-3
    # and the force is on the cone: |f_t| = mu f_n for a sliding point
    F = wrench[:, :3]
    ft = np.linalg.norm(F - (F @ n[0])[:, None] * n[0], axis=1)
    np.testing.assert_allclose(ft, 0.4 * fn[:, 0], rtol=1e-6)


def test_friction_opposes_the_sliding_whatever_its_direction():
    # A corner off the peg's mid-plane on a chamfer turned by 3 degrees (erz combined with ex): the grasp
    # lets it slide partly sideways. Coulomb: the friction force is exactly opposite the sliding. A
    # fixed 4-sided cone locked it to the fall line and lost the sideways part, whose 14 mm lever on the
    # tilt about x made that tilt ~2x too large.
    grasp = _grasp()
    r, area, n, gaps = _corner(3.0, y=-5.0)
    qs, _, _, wrench = solve_rim_contact(grasp.K, r, area, n, gaps, DESCENTS, 0.4, 200.0, 1e9)
    for q, F, s in zip(qs, wrench[:, :3], DESCENTS):
        w = _point_motion(q, r[0], s)
        wt, ft = w - (w @ n[0]) * n[0], F - (F @ n[0]) * n[0]
        assert abs(wt[1]) > 0.1 * np.linalg.norm(wt)  # a real sideways part
        np.testing.assert_allclose(ft / np.linalg.norm(ft), -wt / np.linalg.norm(wt), atol=1e-3)


def test_the_total_vertical_rim_load_never_exceeds_the_pads_capacity():
    # The pads hold the peg by friction up to mu_pad x total grip force: the whole vertical rim force,
    # the friction part on the chamfer included, stops there (the rest of the descent is slip).
    grasp = _grasp()
    pts = np.array([[5.0, -2.0, -14.0], [5.0, 2.0, -14.0], [4.0, 5.0, -14.0]])
    n = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    for cap in (0.8, 2.0, 5.0):
        qs, _, loads, wrench = solve_rim_contact(grasp.K, pts, np.full(3, 0.5), n, np.array([0.0, 0.0, 0.2]),
                                                  DESCENTS, 0.4, 200.0, cap)
        np.testing.assert_allclose(loads, wrench[:, 2], rtol=1e-9)  # the load is the total vertical force
        assert np.all(wrench[:, 2] <= cap * (1 + 1e-9))
        assert wrench[-1, 2] > 0.99 * cap  # and it does reach the capacity
        np.testing.assert_allclose(grasp.K @ qs.T, wrench.T, atol=1e-8)  # equilibrium
