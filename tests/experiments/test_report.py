import numpy as np

from tla.eval.offline import GoalTolerance, direction_by_label_size
from tla.experiments.report import label_size_section


def test_label_size_section_lists_each_model_per_axis_and_size():
    labels = np.array([[0.0, 0.3, -1.5], [0.2, 0.0, 0.7]])
    stay = direction_by_label_size(np.zeros((2, 3)), labels, GoalTolerance())  # answers 0 everywhere
    regressor = direction_by_label_size(np.array([[0.01, 0.02, -0.3], [0.03, -0.05, 0.9]]), labels, GoalTolerance())
    lines = label_size_section({"TLA": {"direction_by_label_size": stay},
                                "BC": {"direction_by_label_size": regressor}}, "sp_test")
    text = "\n".join(lines)
    assert "by label size (sp_test)" in text
    # rz has no zero and no small label here: those columns are left out
    assert "| model | x zero (n=1) | x small (n=1) | y zero (n=1) | y small (n=1) | rz large (n=2) |" in text
    assert "| TLA | 100.0 | 0.0 | 100.0 | 0.0 | 0.0 |" in text  # 0 has no sign: every non-zero label missed
    assert "| BC | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |" in text
    assert label_size_section({"old run": {"gcr": 0.1}}, "sp_test") == []  # results from before the split
