"""The observation contract: a trained run records the spec and the sensor it was trained on, evaluation
and serving read them from the run (not from the dataset), and a mismatch is one error naming both specs."""

import json
import shutil

import numpy as np
import pytest
import torch
from scaffold import BC_SMALL

from tla.sim.observation import ObservationSpec, check_same_spec

TRAIN = ["train.batch_size=4", "train.val_fraction=0.1", "train.val_every=0"]


def test_spec_states_the_shape_and_checks_observations():
    spec = ObservationSpec(96, 128, "marker_flow")
    assert spec.shape == (8, 96, 128, 3)
    assert spec.frame_names[:2] == ["left_t0", "left_t1"] and spec.frame_names[-1] == "right_t3"
    assert ObservationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    spec.check(np.zeros((2, 8, 96, 128, 3), np.uint8))
    with pytest.raises(ValueError, match=r"does not match the spec marker_flow 96x128"):
        spec.check(np.zeros((8, 120, 160, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown tactile modality"):
        ObservationSpec(96, 128, "sound")
    with pytest.raises(ValueError, match="trained on rgb 96x128.*gives rgb 120x160"):
        check_same_spec(ObservationSpec(96, 128), ObservationSpec(120, 160), "that dataset")
    check_same_spec(None, spec, "old run")  # runs of older versions record none: nothing to compare


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step BC run on the smoke data (96x128), read as marker flow."""
    from scaffold import small_bc_run

    return small_bc_run(tmp_path_factory.mktemp("contract"), TRAIN)


def test_a_run_records_its_spec_and_sensor_and_needs_no_dataset(trained, tmp_path):
    from tla.eval.closed_loop import evaluate_closed_loop, run_sim_config
    from tla.policies.registry import load_policy

    data, run = trained
    info = json.loads((data / "meta" / "info.json").read_text())
    record = json.loads((run / "policy" / "observation.json").read_text())
    assert record["observation"] == {"height": 96, "width": 128, "modality": "marker_flow", "pads": 2, "steps": 4}
    assert record["sim_config"] == info["sim_config"]
    policy = load_policy(run)
    assert policy.observation_spec == ObservationSpec(96, 128, "marker_flow")
    # loaded for inference: batch norm reads its running statistics in any forward pass, and keeps them
    assert not any(m.training for m in policy.model.modules())
    stats = {k: v.clone() for k, v in policy.model.state_dict().items() if "running" in k}
    obs = np.random.default_rng(0).integers(0, 256, (3, 8, 96, 128, 3), dtype=np.uint8)
    from tla.policies.frames import preprocess

    x = preprocess(torch.as_tensor(obs), policy.config.image_size, policy.config.input_format)
    one = policy.model(x[:1]).detach()
    torch.testing.assert_close(policy.model(x)[:1].detach(), one)  # the batch does not change its action
    assert stats and all(torch.equal(v, policy.model.state_dict()[k]) for k, v in stats.items())
    assert load_policy(run / "checkpoints" / "last").observation_spec == policy.observation_spec

    # the dataset moves away: closed-loop trials still render the sensor the run was trained on
    moved = shutil.move(str(data), str(tmp_path / "moved"))
    try:
        cfg = run_sim_config(run, None)
        assert (cfg.render.height, cfg.render.width) == (96, 128)
        evaluate_closed_loop(run, [2.0], ["square"], 1, tmp_path / "cl", seed=0, workers=1, progress=False)
        assert json.loads((tmp_path / "cl" / "summary.json").read_text())[0]["episodes"] == 1
    finally:
        shutil.move(moved, str(data))


def test_evaluating_on_another_spec_is_one_error_naming_both(trained, tmp_path):
    import dataclasses

    from tla.data.build import build
    from tla.data.config import preset
    from tla.eval.closed_loop import run_sim_config
    from tla.eval.offline import evaluate_offline

    _, run = trained
    smoke = preset("smoke")
    other = tmp_path / "other"
    build(dataclasses.replace(smoke, splits=smoke.splits[1:2], sim_overrides=("render.height=48", "render.width=64")),
          other, progress=False)
    with pytest.raises(ValueError, match="trained on marker_flow 96x128.*gives marker_flow 48x64"):
        evaluate_offline(run, other, "sp_test", tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="trained on marker_flow 96x128"):
        run_sim_config(run, other)


def test_the_trainer_refuses_a_dataset_in_another_modality(trained, tmp_path):
    from tla.data.dataset import TactileDataset
    from tla.policies.registry import build_policy
    from tla.train.config import TrainConfig
    from tla.train.trainer import train

    data, _ = trained
    policy = build_policy("bc", "tiny", BC_SMALL)  # reads marker_flow
    with pytest.raises(ValueError, match="reads 'marker_flow' but the dataset gives rgb 96x128"):
        train(policy, TactileDataset(data, "sp_train"), TrainConfig(max_steps=1, batch_size=4), tmp_path / "r")


def test_the_server_reports_the_spec(trained):
    from fastapi.testclient import TestClient

    from tla.serve.app import ServeSettings, app_from_run

    _, run = trained
    client = TestClient(app_from_run(run, ServeSettings()))
    info = client.get("/info").json()
    assert info["observation"]["modality"] == "marker_flow" and info["frame_size"] == [96, 128]
    assert info["model_input"]["modality"] == "marker_flow"
