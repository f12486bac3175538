"""Information content: linear probes of the error's sign on ~2000 failed attempts (2.0 mm, square)."""

import pytest

from tla.sim.probe import sign_probe_accuracies


@pytest.mark.slow
def test_linear_probe_reads_the_error_signs():
    acc = sign_probe_accuracies(n=2000, clearance=2.0, seed=0)
    assert acc["samples"] == 2000
    assert acc["sign_ex_test_samples"] > 300 and acc["sign_erz_test_samples"] > 300
    assert acc["sign_ex_accuracy"] >= 0.90, acc
    assert acc["sign_erz_accuracy"] >= 0.75, acc
    assert acc["sign_ey_accuracy"] >= 0.65, acc
