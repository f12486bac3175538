import numpy as np
import pytest

from tla.sim import geometry as geo
from tla.sim.config import LabelConfig
from tla.sim.labels import action_label


def allowed_shift(shape, clearance, direction, hi=5.0):
    """Largest translation along `direction` that still inserts (bisection on the exact test)."""
    lo = 0.0
    d = np.asarray(direction, float)
    for _ in range(40):
        mid = (lo + hi) / 2
        if geo.inserts(shape, clearance, [*(mid * d), 0.0], area_tol=1e-9):
            lo = mid
        else:
            hi = mid
    return lo


def test_shapes_have_the_nominal_width_and_hole_is_grown_by_half_clearance():
    for shape in geo.SHAPES:
        peg = geo.peg_polygon(shape)
        hole = geo.hole_polygon(shape, 2.0)
        minx, miny, maxx, maxy = peg.bounds
        assert min(maxx - minx, maxy - miny) == pytest.approx(10.0, abs=0.05), shape
        assert hole.contains(peg)
        # every point of the hole boundary is at least c/2 from the peg (exact offset)
        assert hole.exterior.distance(peg) == pytest.approx(1.0, abs=1e-6), shape


def test_square_tolerance_is_half_clearance_on_both_axes():
    assert allowed_shift("square", 2.0, [1, 0]) == pytest.approx(1.0, abs=1e-4)
    assert allowed_shift("square", 2.0, [0, 1]) == pytest.approx(1.0, abs=1e-4)


def test_triangle_tolerance_depends_on_direction():
    # Vertex toward +y: toward the vertex the peg may move c (twice the inradius gap), toward the
    # opposite face only c/2, sideways (c/2)/cos(30 deg). It comes out of the geometry alone.
    c = 2.0
    up, down = allowed_shift("triangle", c, [0, 1]), allowed_shift("triangle", c, [0, -1])
    side = allowed_shift("triangle", c, [1, 0])
    assert up == pytest.approx(c, rel=1e-3)
    assert down == pytest.approx(c / 2, rel=1e-3)
    assert side == pytest.approx(c / 2 / np.cos(np.radians(30)), rel=1e-3)
    assert len({round(up, 3), round(down, 3), round(side, 3)}) == 3


def test_insertion_and_contact_region():
    assert geo.inserts("square", 2.0, [0.5, -0.5, 0.0])
    assert not geo.inserts("square", 2.0, [1.5, 0.0, 0.0])
    fp = geo.footprint(geo.peg_polygon("square"), [1.5, 0.0, 0.0])
    region = geo.contact_region(fp, geo.hole_polygon("square", 2.0))
    assert region.area == pytest.approx(0.5 * 10.0, rel=1e-6)  # a 0.5 mm strip along the 10 mm face
    assert region.bounds[0] == pytest.approx(6.0)


def test_round_hole_tolerance_is_a_disc():
    r = allowed_shift("round", 2.0, [np.sqrt(0.5), np.sqrt(0.5)])
    assert r == pytest.approx(1.0, abs=2e-3)  # not the sqrt(2) of the +-c/2 box


def test_unknown_shape_is_a_clear_error():
    with pytest.raises(geo.UnknownShapeError, match="choose one of square"):
        geo.peg_polygon("star")


@pytest.mark.parametrize(
    "error, clearance, expected",
    [
        ([2.0, -2.0, 3.0], 2.0, [-1.0, 1.0, -1.5]),  # far outside: capped at delta and 1.5 deg
        ([1.3, -1.2, -0.4], 2.0, [-0.3, 0.2, 0.4]),  # just outside: to the band edge (c/2 = 1.0)
        ([0.7, -0.2, 0.0], 2.0, [0.0, 0.0, 0.0]),  # inside the band: no translation
        ([1.0, 1.5, 1.0], 1.0, [-0.5, -1.0, -1.0]),  # c/2 = 0.5
        ([-2.4, 0.0, -6.0], 1.6, [1.0, 0.0, 1.5]),
    ],
)
def test_labels_match_hand_computed_cases(error, clearance, expected):
    np.testing.assert_allclose(action_label(error, clearance), expected, atol=1e-12)


def test_center_label_mode_moves_toward_zero():
    a = action_label([1.3, -0.4, 0.5], 2.0, LabelConfig(mode="center"))
    np.testing.assert_allclose(a, [-1.0, 0.4, -0.5])
    with pytest.raises(ValueError, match="unknown label mode"):
        action_label([0, 0, 0], 2.0, LabelConfig(mode="nearest"))


def test_labels_vectorise():
    E = np.array([[2.0, -2.0, 3.0], [0.7, -0.2, 0.0]])
    np.testing.assert_allclose(action_label(E, 2.0), [[-1.0, 1.0, -1.5], [0.0, 0.0, 0.0]])


def test_one_colliding_start_rule_for_the_env_and_the_build():
    """Env reset and dataset build draw the start error with the same helper: the first draw that collides."""
    import numpy as np
    import pytest

    from tla.sim.config import ErrorConfig
    from tla.sim.geometry import inserts
    from tla.sim.labels import draw_colliding_error, sample_initial_error

    cfg = ErrorConfig()
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    error = draw_colliding_error(rng_a, cfg, lambda e: not inserts("square", 2.0, e), what="square, 2.0 mm")
    draws = [sample_initial_error(rng_b, cfg) for _ in range(50)]
    first = next(d for d in draws if not inserts("square", 2.0, d))
    assert np.array_equal(error, first)
    with pytest.raises(ValueError, match=r"no colliding start in 20 draws \(square, 2.0 mm\).*widen `errors`"):
        draw_colliding_error(np.random.default_rng(0), ErrorConfig(ex=0.01, ey=0.01, erz=0.01),
                             lambda e: not inserts("square", 2.0, e), tries=20, what="square, 2.0 mm")
