"""The one policy contract (`tla.policies.base`): declared input features, dict batches, and the oracle's
privileged state through the same door."""

import numpy as np
import pytest

from tla.config import apply_overrides
from tla.policies.base import (
    CLEARANCE,
    ERROR,
    OBSERVATION,
    PRIVILEGED,
    SHAPE,
    Policy,
    Prediction,
    batch_for,
    check_batch,
    make_batch,
)
from tla.policies.oracle import OraclePolicy
from tla.sim.config import SimConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/policies/conftest.py

NAMES = ("bc", "dp", "tla", "oracle")
LEARNED = ("bc", "dp", "tla")
SHAPES = ["square", "triangle"]
ERRORS = [[0.5, -0.3, 2.0], [-1.2, 0.0, -0.5]]
CLEARANCES = [2.0, 1.6]
ORACLE_MISSING_ERROR = (
    "the oracle policy reads 'state.error' (B, 3) mm/mm/deg, the privileged true pose error; this batch has "
    "none: it is given by the simulator's closed loop, not by a dataset or a robot"
)


def build(name: str):
    if name == "bc":
        from tla.policies.bc import BCConfig, BCPolicy

        return BCPolicy(BCConfig(image_size=(24, 32), embedding_size=8, hidden_sizes=(8, 8, 16, 16)))
    if name == "dp":
        from tla.policies.dp import DPConfig, DPPolicy

        return DPPolicy(DPConfig(image_size=(24, 32), embedding_size=8, hidden_sizes=(8, 8, 16, 16),
                                 down_dims=(16, 32), horizon=2, diffusion_step_embed_dim=16, n_groups=4,
                                 ddim_steps=2))
    if name == "tla":
        from tla.policies.tla import TLAPolicy

        return TLAPolicy.build("tiny", ["generate.max_new_tokens=6"])
    return OraclePolicy()


@pytest.fixture(scope="module")
def policies():
    return {name: build(name) for name in NAMES}


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 30, 40, 3), dtype=np.uint8)


def full_batch() -> dict:
    return make_batch(frames(2), SHAPES, errors=ERRORS, clearances=CLEARANCES)


def spy(policy, monkeypatch) -> list[set]:
    """Record the keys of every batch `policy.predict` receives."""
    seen, predict = [], policy.predict

    def recording(batch, **options):
        seen.append(set(batch))
        return predict(batch, **options)

    monkeypatch.setattr(policy, "predict", recording)
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_each_policy_declares_its_features_and_predicts_from_a_batch(policies, name):
    policy = policies[name]
    assert isinstance(policy, Policy) and policy.name == name
    want = (SHAPE, ERROR, CLEARANCE) if name == "oracle" else (OBSERVATION, SHAPE)
    assert policy.input_features == want
    pred = policy.predict(full_batch())  # undeclared keys are there and ignored
    assert isinstance(pred, Prediction) and np.asarray(pred.actions).shape == (2, 3)
    assert np.isfinite(pred.actions).all()
    if name == "oracle":  # the label of the true error: never away from zero error
        assert (pred.actions * np.asarray(ERRORS) <= 0).all() and np.abs(pred.actions).sum() > 0


def test_make_batch_takes_one_observation_and_one_shape():
    b = make_batch(frames(1)[0], "round", errors=ERRORS[0], clearances=2.0)
    assert b[OBSERVATION].shape == (1, 8, 30, 40, 3) and b[SHAPE] == ["round"]
    assert b[ERROR].shape == (1, 3) and b[CLEARANCE].shape == (1,)
    assert make_batch(None, SHAPES) == {SHAPE: SHAPES}  # None: left out


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_missing_a_declared_key_fails_with_one_clear_line(policies, name):
    policy = policies[name]
    for key in policy.input_features:
        batch = {k: v for k, v in full_batch().items() if k != key}
        with pytest.raises(ValueError) as e:
            policy.predict(batch)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"the {name} policy reads {key!r} ")
        assert "this batch has none" in msg
        assert ("simulator's closed loop" in msg) == (key in PRIVILEGED)
    if name == "oracle":
        with pytest.raises(ValueError) as e:
            policy.predict(make_batch(frames(2), SHAPES, clearances=CLEARANCES))
        assert str(e.value) == ORACLE_MISSING_ERROR


def test_malformed_features_name_the_key_and_what_is_expected(policies):
    bc, oracle = policies["bc"], policies["oracle"]
    obs = r"^the bc policy reads 'observation' uint8 \(B, 8, H, W, 3\), the tactile frames .*; got "
    with pytest.raises(ValueError, match=obs + "dtype float32$"):
        bc.predict(make_batch(frames(2).astype(np.float32), SHAPES))
    with pytest.raises(ValueError, match=obs + r"shape \(2, 4, 30, 40, 3\)$"):
        bc.predict(make_batch(frames(2)[:, :4], SHAPES))
    with pytest.raises(ValueError, match=r"^the bc policy reads 'shape' list\[str\] of length B.*got a str$"):
        bc.predict({OBSERVATION: frames(1), SHAPE: "square"})
    err = r"^the oracle policy reads 'state.error' \(B, 3\) mm/mm/deg.*; got "
    with pytest.raises(ValueError, match=err + r"shape \(2, 2\)$"):
        oracle.predict(make_batch(None, SHAPES, errors=[[0, 0], [0, 0]], clearances=CLEARANCES))
    with pytest.raises(ValueError, match=err + "non-finite values$"):
        oracle.predict(make_batch(None, SHAPES, errors=[[np.nan, 0, 0], [0, 0, 0]], clearances=CLEARANCES))
    with pytest.raises(TypeError, match="predicts from a batch dict"):
        bc.predict(frames(2))  # the old positional call


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_leading_size_fails_clearly(policies, name):
    policy = policies[name]
    batch = make_batch(frames(3), SHAPES, errors=ERRORS + [[0, 0, 0]], clearances=CLEARANCES + [1.0])
    first, second = policy.input_features[:2]
    with pytest.raises(ValueError) as e:
        policy.predict(batch)
    sizes = {OBSERVATION: 3, SHAPE: 2, ERROR: 3, CLEARANCE: 3}
    assert str(e.value).startswith(f"the {name} policy reads ")
    assert f"got {sizes[second]} where {first!r} has B = {sizes[first]}" in str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_batch_for_passes_the_true_state_to_the_oracle_only(policies, name, monkeypatch):
    """Through the closed-loop evaluator (`run_episode`): the caller has the true error at every step."""
    from tla.eval.closed_loop import run_episode
    from tla.sim.env import PegInHoleEnv

    policy = policies[name]
    seen = spy(policy, monkeypatch)
    cfg = apply_overrides(SimConfig(), ["render.height=30", "render.width=40", "max_attempts=3"])
    run_episode(PegInHoleEnv(cfg, observe=False), policy, seed=1, shape="square", clearance=2.0)
    assert seen and all(keys == set(policy.input_features) for keys in seen)
    assert all((ERROR in keys) == (name == "oracle") for keys in seen)
    # and directly: a learned policy's batch drops the error even when the caller passes it
    batch = batch_for(policy, frames(2), SHAPES, errors=ERRORS, clearances=CLEARANCES)
    assert set(batch) == set(policy.input_features)


def test_batch_for_without_the_true_state_fails_for_the_oracle_only(policies):
    for name in LEARNED:
        assert set(batch_for(policies[name], frames(2), SHAPES)) == {OBSERVATION, SHAPE}
    with pytest.raises(ValueError) as e:
        batch_for(policies["oracle"], frames(2), SHAPES)
    assert str(e.value) == ORACLE_MISSING_ERROR


def test_a_policy_without_declared_features_is_refused():
    class Legacy:
        name = "legacy"

        def predict(self, observations, shapes):
            return Prediction(actions=np.zeros((len(shapes), 3)))

    with pytest.raises(TypeError, match="the legacy policy declares no input_features"):
        check_batch(Legacy(), make_batch(frames(1), SHAPES[:1]))


def test_the_server_refuses_a_privileged_policy_in_one_line():
    from tla.serve.app import create_app

    with pytest.raises(ValueError) as e:
        create_app(OraclePolicy())
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("the oracle policy reads privileged simulator state")
    assert "cannot be served" in msg
