import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tla.sim.env  # noqa: F401  (registers TLA/PegInHole-v0)
from tla.config import apply_overrides
from tla.eval.closed_loop import episode_seeds, run_closed_loop, summarize
from tla.policies.oracle import OraclePolicy
from tla.sim import SHAPES, SimConfig
from tla.sim.env import PegInHoleEnv

SMALL = apply_overrides(SimConfig(), ["render.height=60", "render.width=80"])


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
def test_check_env_passes():
    env = PegInHoleEnv(SMALL)
    check_env(env, skip_render_check=True)


def test_registered_id_makes_the_env():
    import gymnasium as gym

    env = gym.make("TLA/PegInHole-v0", sim_config=SMALL, shape="triangle", clearance=1.6)
    obs, info = env.reset(seed=3)
    assert obs.shape == (8, 60, 80, 3) and info["shape"] == "triangle"


def test_reset_collides_and_step_follows_the_action():
    env = PegInHoleEnv(SMALL)
    obs, info = env.reset(seed=11, options={"shape": "hexagon", "clearance": 1.0})
    assert info["attempts"] == 1 and not info["inserted"] and obs.any()
    e0 = info["error"]
    obs, reward, term, trunc, info = env.step(np.array([0.1, -0.2, 0.5], np.float32))
    np.testing.assert_allclose(info["error"], e0 + [0.1, -0.2, 0.5], atol=1e-6)
    assert info["attempts"] == 2


def test_inserting_action_terminates_with_reward():
    env = PegInHoleEnv(SMALL)
    _, info = env.reset(seed=5)
    obs, reward, term, trunc, info = env.step(-info["error"])  # straight to zero error
    assert term and not trunc and reward == 1.0 and info["inserted"]


def test_truncated_after_max_attempts():
    env = PegInHoleEnv(SMALL, observe=False)
    env.reset(seed=0)
    for k in range(2, 16):
        _, _, term, trunc, info = env.step(np.zeros(3, np.float32))
        assert not term and info["attempts"] == k
        assert trunc == (k == 15)


def test_same_seed_same_episode():
    a, b = PegInHoleEnv(SMALL), PegInHoleEnv(SMALL)
    oa, ia = a.reset(seed=42)
    ob, ib = b.reset(seed=42)
    assert oa.tobytes() == ob.tobytes() and np.array_equal(ia["error"], ib["error"])
    sa, sb = a.step(np.array([0.3, 0.0, 0.0])), b.step(np.array([0.3, 0.0, 0.0]))
    assert sa[0].tobytes() == sb[0].tobytes()


def test_unknown_shape_in_reset_options():
    env = PegInHoleEnv(SMALL)
    with pytest.raises(ValueError, match="unknown peg shape"):
        env.reset(seed=0, options={"shape": "star"})


def test_oracle_inserts_every_shape_and_clearance():
    # 200 episodes per condition (geometry decides the outcome; the oracle reads the true error).
    recs = run_closed_loop(OraclePolicy, list(SHAPES), [2.0, 1.6, 1.0], 200, observe=False, progress=False)
    rows = summarize(recs)
    assert len(rows) == 15
    for r in rows:
        assert r["success"] >= 0.98, r
        assert 1.0 <= r["mean_steps"] <= 6.0, r


def test_oracle_closed_loop_with_rendered_observations_and_fixed_seeds():
    a = run_closed_loop(OraclePolicy, ["square", "round"], [1.6], 4, base_seed=3, sim_cfg=SMALL, progress=False)
    b = run_closed_loop(OraclePolicy, ["square", "round"], [1.6], 4, base_seed=3, sim_cfg=SMALL, workers=2,
                        progress=False)
    assert [r.__dict__ for r in a] == [r.__dict__ for r in b]
    assert all(r.success for r in a)
    assert [r.seed for r in a[:4]] == episode_seeds(3, 4)


def test_zero_action_policy_never_inserts():
    from tla.policies.base import OBSERVATION, SHAPE, Prediction

    class Zero:
        name = "zero"
        input_features = (OBSERVATION, SHAPE)

        def predict(self, batch):
            return Prediction(actions=np.zeros((len(batch[SHAPE]), 3)))

    recs = run_closed_loop(Zero, ["square"], [2.0], 5, observe=False, progress=False)
    assert not any(r.success for r in recs) and all(r.attempts == 15 for r in recs)
