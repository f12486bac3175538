"""The harder closed-loop conditions: robustness knobs as named conditions, and the `hard` protocol."""

from dataclasses import replace

import numpy as np
import pytest

from tla.config import to_dict
from tla.eval.closed_loop import run_closed_loop, summarize
from tla.experiments.robustness import HARD, hard_sim_config, robust_configs
from tla.experiments.tables import HARD_ACTION_STD, ROBUSTNESS
from tla.policies.base import OBSERVATION, SHAPE, Prediction
from tla.policies.oracle import OraclePolicy
from tla.sim.config import SimConfig


class Zero:
    """Never moves: every episode runs until the attempts are spent."""

    name = "zero"
    input_features = (OBSERVATION, SHAPE)

    def predict(self, batch):
        return Prediction(actions=np.zeros((len(batch[SHAPE]), 3)))


def test_hard_protocol_truncates_at_the_configured_attempts():
    for attempts in (5, 3):
        cfg = hard_sim_config(SimConfig(), attempts)
        recs = run_closed_loop(Zero, ["square"], [2.0], 6, observe=False, progress=False, conditions={HARD: cfg})
        assert all(r.attempts == attempts and r.steps == attempts - 1 and not r.success for r in recs)
        assert {r.condition for r in recs} == {HARD}
        rows = summarize(recs)
        assert rows[0]["condition"] == HARD and rows[0]["episodes"] == 6


def test_an_attempt_budget_truncates_every_robustness_condition_and_nothing_else_changes():
    """`max_attempts` (tla eval closed-loop --max-attempts, the smoke reproduce preset) replaces only the
    attempts per episode, and the knobs built on it keep it."""
    from tla.eval.closed_loop import with_max_attempts

    base = SimConfig()
    assert with_max_attempts(base, None) is base
    budget = with_max_attempts(base, 3)
    assert budget.max_attempts == 3 and replace(budget, max_attempts=base.max_attempts) == base
    configs = robust_configs(budget)
    recs = run_closed_loop(Zero, ["square"], [2.0], 2, observe=False, progress=False, conditions=configs)
    assert len(recs) == 2 * len(configs)
    assert all(r.attempts == 3 and r.steps == 2 and not r.success for r in recs)
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        with_max_attempts(base, 0)


def test_hard_protocol_reaches_the_caps_and_adds_actuation_noise():
    base = SimConfig()
    cfg = hard_sim_config(base, 5)
    assert cfg.max_attempts == 5 and cfg.perturb.action_std == HARD_ACTION_STD
    assert (cfg.errors.ex, cfg.errors.ey, cfg.errors.erz) == (4 * base.labels.delta, 4 * base.labels.delta,
                                                              4 * base.labels.rz_cap)
    assert replace(cfg, max_attempts=base.max_attempts, errors=base.errors, perturb=base.perturb) == base
    # the starts stay within the capped actions' reach: without the noise the oracle always inserts in time
    quiet = replace(cfg, perturb=base.perturb)
    recs = run_closed_loop(OraclePolicy, ["square"], [2.0, 1.0], 40, observe=False, progress=False,
                           conditions={"quiet": quiet, HARD: cfg})
    rows = {(r["condition"], r["clearance"]): r for r in summarize(recs)}
    assert rows[("quiet", 2.0)]["success"] == rows[("quiet", 1.0)]["success"] == 1.0
    assert max(np.abs(r.errors[0]).max() for r in recs) > 3.0  # starts well beyond the paper's 2.5 mm / 5 deg
    assert rows[(HARD, 1.0)]["success"] < 1.0  # the noise costs even the oracle some episodes


def test_conditions_share_the_episode_seeds_and_each_config_differs_by_its_knob_only():
    base = SimConfig()
    configs = robust_configs(base)
    assert list(configs) == [k for k, *_ in ROBUSTNESS]
    for key, cfg in configs.items():
        assert cfg.perturb != base.perturb and replace(cfg, perturb=base.perturb) == base, key
        changed = {k for k, v in to_dict(cfg.perturb).items() if v != to_dict(base.perturb)[k]}
        assert changed and changed <= {"action_std", "pixel_noise_std", "marker_noise_px", "mount_shift_px",
                                       "mount_rot_deg", "stiffness_scale", "occlusion"}
    recs = run_closed_loop(OraclePolicy, ["square"], [2.0], 3, observe=False, progress=False, conditions=configs)
    by_cond = {}
    for r in recs:
        by_cond.setdefault(r.condition, []).append(r)
    assert list(by_cond) == list(configs) and all(len(v) == 3 for v in by_cond.values())
    starts = {k: [tuple(r.errors[0]) for r in v] for k, v in by_cond.items()}
    assert len({tuple(v) for v in starts.values()}) == 1  # the same starts under every knob
    # only actuation noise can move the oracle's trajectory
    for k, v in by_cond.items():
        same = all(a.errors == b.errors for a, b in zip(v, by_cond["stiffness"]))
        assert same == (k != "actuation"), k
