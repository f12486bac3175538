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
