"""Rendering primitives: sub-pixel markers, field sampling, the camera view of the pad fields."""

import numpy as np
import pytest

from tla.sim.config import SimConfig
from tla.sim.render import camera_fields, draw_markers, marker_painter, sample_markers

RC = SimConfig().render


def _darkness_centroid(factor: np.ndarray) -> np.ndarray:
    ink = 1.0 - factor
    ys, xs = np.mgrid[0 : factor.shape[0], 0 : factor.shape[1]]
    return np.array([(ink * xs).sum(), (ink * ys).sum()]) / ink.sum()


@pytest.mark.parametrize("centre", [(100.0, 80.0), (100.375, 80.0), (57.625, 120.875), (200.5, 33.25)])
def test_a_marker_is_drawn_at_its_sub_pixel_centre(centre):
    factor = draw_markers(RC, np.array([centre]))
    # 1/8 px sprites: the ink centroid sits within 1/16 px of the requested centre
    np.testing.assert_allclose(_darkness_centroid(factor), centre, atol=1 / 16 + 1e-6)
    assert factor.min() == pytest.approx(1 - RC.marker_darkness)  # fully covered centre pixel


def test_batched_painting_equals_one_image_at_a_time_and_cuts_markers_off_the_edge():
    rng = np.random.default_rng(0)
    centres = rng.uniform([-8, -8], [RC.width + 8, RC.height + 8], (3, 40, 2))
    painter = marker_painter(RC.height, RC.width, RC.marker_radius * RC.width / RC.pad_width_mm,
                             RC.marker_darkness)
    batch = painter.paint(centres).copy()
    for i in range(3):
        np.testing.assert_array_equal(batch[i], draw_markers(RC, centres[i]))
    assert batch.shape == (3, RC.height, RC.width) and np.all((batch > 0) & (batch <= 1))


def test_sample_markers_is_bilinear_and_accepts_one_reference_per_field():
    gh, gw, cell = 6, 8, 10.0
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    # a field linear in the cell indices is reproduced exactly by bilinear interpolation
    field = np.stack([2 * xx + 1, -3 * yy], -1)[None].repeat(2, 0)
    field[1] *= 2
    refs = np.array([[[23.0, 17.0], [41.5, 33.0]], [[12.0, 48.0], [70.0, 5.0]]], np.float32)
    out = sample_markers(field, refs, cell)
    fx, fy = refs[..., 0] / cell - 0.5, refs[..., 1] / cell - 0.5
    expected = np.stack([2 * fx + 1, -3 * fy], -1) * np.array([1, 2])[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sample_markers(field, refs[0], cell)[0], out[0])  # shared reference


def test_camera_view_mirrors_the_left_pad_and_flips_rows():
    t, gh, gw = 4, 5, 7
    rng = np.random.default_rng(1)
    ind = rng.random((t, 2, gh, gw))
    disp = rng.random((t, 2, gh, gw, 2))
    depth, shear = camera_fields(ind, disp, sigma_cells=1e-3)  # no spreading
    np.testing.assert_allclose(depth[:t], ind[:, 0, ::-1, ::-1], rtol=1e-6)  # left: x mirrored
    np.testing.assert_allclose(depth[t:], ind[:, 1, ::-1, :], rtol=1e-6)
    np.testing.assert_allclose(shear[:t, ..., 0], -disp[:, 0, ::-1, ::-1, 0], rtol=1e-6)
    np.testing.assert_allclose(shear[t:, ..., 0], disp[:, 1, ::-1, :, 0], rtol=1e-6)
    np.testing.assert_allclose(shear[..., 1], -np.concatenate([disp[:, 0, ::-1, ::-1, 1],
                                                               disp[:, 1, ::-1, :, 1]]), rtol=1e-6)


def test_touching_markers_darken_each_other_whatever_the_drawing_order():
    a, b = np.array([100.25, 80.0]), np.array([107.0, 81.5])  # closer than two sprite widths
    fa, fb = draw_markers(RC, a[None]), draw_markers(RC, b[None])
    assert np.any((fa < 1) & (fb < 1))  # the sprites share pixels
    np.testing.assert_array_equal(draw_markers(RC, np.stack([a, b])), fa * fb)
    np.testing.assert_array_equal(draw_markers(RC, np.stack([b, a])), fa * fb)


def test_stamping_a_wrong_image_names_the_problem():
    painter = marker_painter(RC.height, RC.width, RC.marker_radius * RC.width / RC.pad_width_mm,
                             RC.marker_darkness)
    placed = painter.place(np.array([[10.0, 10.0]]))
    with pytest.raises(ValueError, match="float32"):
        painter.stamp(np.ones((RC.height, RC.width)), placed)  # float64
    with pytest.raises(ValueError, match="C-contiguous"):
        painter.stamp(np.ones((RC.height, 2 * RC.width), np.float32)[:, ::2], placed)


def test_threads_rendering_at_once_give_the_same_images_as_one_thread():
    from concurrent.futures import ThreadPoolExecutor

    from tla.config import apply_overrides
    from tla.sim.simulator import simulate_attempt

    cfg = apply_overrides(SimConfig(), ["render.height=60", "render.width=80"])
    errors = [(1.8, 0.4, 3.0), (-1.5, 1.1, -2.0), (2.2, -0.9, 4.0), (-2.0, -1.6, 1.0)] * 2

    def frames(i):
        return simulate_attempt(cfg, "square", 2.0, errors[i], np.random.default_rng([3, i])).frames

    alone = [frames(i) for i in range(len(errors))]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(frames, range(len(errors))))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
