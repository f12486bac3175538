import numpy as np
import pytest

from tla.eval.metrics import wilson_interval
from tla.eval.offline import GoalTolerance, direction_by_label_size, direction_correct, goal_reached, offline_metrics


def test_wilson_interval_hand_computed():
    lo, hi = wilson_interval(44, 50)  # BC at 2.0 mm in the paper
    assert lo == pytest.approx(0.7620, abs=1e-4) and hi == pytest.approx(0.9438, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_goal_region_boundaries():
    tol = GoalTolerance(eta=0.1, eta_rz=0.5)
    errors = np.array([[1.5, 0.0, 0.0]] * 4 + [[0.0, 0.0, 2.0]] * 2)
    actions = np.array([
        [-0.4, 0.0, 0.0],  # ends at 1.1 = c/2 + eta: inside (boundary included)
        [-0.39, 0.0, 0.0],  # 1.11: outside
        [-2.6, 0.0, 0.0],  # overshoot to -1.1: inside
        [-2.61, 0.0, 0.0],  # -1.11: outside
        [0.0, 0.0, -1.5],  # rz 0.5: inside
        [0.0, 0.0, -1.4],  # rz 0.6: outside
    ])
    np.testing.assert_array_equal(goal_reached(errors, actions, 2.0, tol), [True, False, True, False, True, False])


def test_l1_subsets_and_direction():
    errors = np.array([[1.5, 0.0, 3.0], [1.5, 0.0, 3.0], [-2.0, 1.8, -1.0]])
    labels = np.array([[-0.5, 0.0, -1.5], [-0.5, 0.0, -1.5], [1.0, -0.8, 1.0]])
    actions = np.array([[-0.6, 0.05, -2.8], [0.2, 0.3, -1.0], [0.9, -0.7, 1.2]])
    m = offline_metrics(actions, labels, errors, [2.0] * 3, ["square"] * 3, parse_ok=[True, True, False])
    # sample 0: |1.5-0.6|=0.9, |0.05|, |3-2.8|=0.2 -> goal; sample 1: 1.7 -> no; sample 2: |-1.1|, |1.1|, |0.2| -> goal
    assert m["gcr"] == pytest.approx(2 / 3) and m["gcr_samples"] == 2
    assert m["l1_x_gcr"] == pytest.approx((0.1 + 0.1) / 2)
    assert m["l1_x_all"] == pytest.approx((0.1 + 0.7 + 0.1) / 3)
    assert m["l1_rz_gcr"] == pytest.approx((1.3 + 0.2) / 2)
    assert m["parse_failure_rate"] == pytest.approx(1 / 3)
    d = direction_correct(actions, labels, GoalTolerance())
    np.testing.assert_array_equal(d, [[True, True, True], [False, False, True], [True, True, True]])
    assert m["direction_x"] == pytest.approx(2 / 3) and m["direction_y"] == pytest.approx(2 / 3)
    # one step into the hole by exact geometry: sample 0 ends at (0.9, 0.05, 0.2 deg) and inserts; sample 2
    # ends at (-1.1, 1.1, 0.2 deg), inside the GCR tolerance (c/2 + eta) but not in the hole
    assert m["one_step_insertion"] == pytest.approx(1 / 3)


def test_direction_by_label_size_splits_where_the_errors_are():
    labels = np.array([[0.0, 0.3, -1.5], [0.0, -0.2, 0.2], [0.2, 0.0, 0.0], [-1.0, 0.7, 0.6]])
    actions = np.array([
        [0.05, 0.0, -1.0],  # x zero: |0.05| <= eta right; y small: an answer of 0 has no sign, wrong; rz large right
        [0.3, -0.01, 0.1],  # x zero: moves 0.3, wrong; y small: near-zero with the right sign, right; rz small right
        [0.01, 0.0, 0.6],  # x small right; y zero right; rz zero: |0.6| > eta_rz, wrong
        [0.4, 0.5, 0.6],  # x large wrong; y large right; rz large right
    ])
    d = direction_by_label_size(actions, labels, GoalTolerance())
    assert d["x_zero"] == {"accuracy": 0.5, "samples": 2}
    assert d["x_small"] == {"accuracy": 1.0, "samples": 1} and d["x_large"] == {"accuracy": 0.0, "samples": 1}
    assert d["y_small"] == {"accuracy": 0.5, "samples": 2} and d["y_zero"] == {"accuracy": 1.0, "samples": 1}
    assert d["rz_zero"] == {"accuracy": 0.0, "samples": 1} and d["rz_large"] == {"accuracy": 1.0, "samples": 2}
    assert d["rz_small"] == {"accuracy": 1.0, "samples": 1}
    # the parts add up to the axis's accuracy
    m = offline_metrics(actions, labels, np.zeros((4, 3)), 2.0, ["square"] * 4)
    for axis in ("x", "y", "rz"):
        parts = [d[f"{axis}_{k}"] for k in ("zero", "small", "large")]
        weighted = sum(p["accuracy"] * p["samples"] for p in parts if p["samples"]) / 4
        assert weighted == pytest.approx(m[f"direction_{axis}"])
    assert m["direction_by_label_size"] == d
    empty = direction_by_label_size(np.zeros((1, 3)), np.ones((1, 3)), GoalTolerance())
    assert empty["x_zero"] == {"accuracy": None, "samples": 0}


def test_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="disagree in length"):
        offline_metrics(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((2, 3)), 2.0, ["square"] * 2)
