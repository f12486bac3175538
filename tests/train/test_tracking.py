"""Experiment tracking (tensorboard through accelerate), checkpoints/best, and closed-loop rollouts during
training: the tiny BC policy on the synthetic set, a few steps each."""

import json
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tla.config import apply_overrides, to_dict
from tla.policies.base import policy_modality
from tla.policies.registry import build_policy, load_policy
from tla.sim.config import SimConfig
from tla.sim.observation import ObservationSpec
from tla.train import trainer
from tla.train.config import TrainConfig
from tla.train.synthetic import SyntheticTactile
from tla.train.trainer import train

FAST = {"max_steps": 4, "batch_size": 4, "log_every": 2, "save_every": 1000, "num_workers": 0}
SIM = apply_overrides(SimConfig(), ["render.height=24", "render.width=32"])  # the synthetic frames' size


class SimulatedSynthetic(SyntheticTactile):
    """The synthetic set as if the small simulator SIM had rendered it in `modality` (a built dataset
    records both)."""

    def __init__(self, n: int, modality: str):
        super().__init__(n, size=(SIM.render.height, SIM.render.width))
        self.sim_config, self.observation_spec = to_dict(SIM), ObservationSpec.of_sim(SIM, modality)


def _log(run, split=None):
    rows = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == split]


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _scripted_validation(monkeypatch, losses):
    """validate() returns these val_loss values in turn (so the best step is known in advance)."""
    values = iter(losses)
    monkeypatch.setattr(trainer, "validate", lambda *a, **k: {"val_loss": next(values), "val_l1_x": 0.5})


def _ckpt_step(path) -> int:
    return torch.load(path / "trainer_state.pt", weights_only=False)["step"]


def test_tensorboard_event_files_hold_train_and_validation_scalars(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(val_fraction=0.25, val_every=2, val_max_samples=4, **FAST)  # report_to: the default
    assert cfg.report_to == "tensorboard"
    train(build_policy("bc", "tiny", []), SyntheticTactile(16, size=(24, 32)), cfg, run, {"policy": "bc"})
    scalars = _scalars(run)
    assert {"train/loss", "train/lr", "train/grad_norm", "val/loss", "val/l1_x"} <= set(scalars)
    assert [s for s, _ in scalars["train/loss"]] == [2, 4] and [s for s, _ in scalars["val/loss"]] == [2, 4]
    logged = {r["step"]: r["loss"] for r in _log(run) if "loss" in r}
    assert all(v == pytest.approx(logged[s]) for s, v in scalars["train/loss"])
    assert list((run / "tb").glob("*/hparams.yml"))  # the resolved run config, as hyperparameters
    # checkpoints/best follows the real validation loss (lower is better)
    best = json.loads((run / "checkpoints" / "best" / "best.json").read_text())
    val = _log(run, "val")
    assert best["metric"] == "val_loss" and best["value"] == min(r["val_loss"] for r in val)
    assert best["step"] == min(val, key=lambda r: r["val_loss"])["step"]


def test_report_to_none_writes_no_tracker_files(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(val_fraction=0.0, val_every=0, report_to="none", **FAST)
    assert train(build_policy("bc", "tiny", []), SyntheticTactile(16, size=(24, 32)), cfg, run)["finished"]
    assert not (run / "tb").exists() and (run / "train_log.jsonl").exists()
    assert not (run / "checkpoints" / "best").exists()  # no validation: nothing to choose a best by


def test_a_missing_tracker_package_is_named_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(trainer.TRACKERS, "wandb", lambda: False)
    cfg = TrainConfig(report_to="wandb", **FAST)
    with pytest.raises(ModuleNotFoundError, match="pip install wandb"):
        train(build_policy("bc", "tiny", []), SyntheticTactile(16, size=(24, 32)), cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_best_checkpoint_is_the_best_validation_step_not_the_last(tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [3.0, 1.0, 2.0, 4.0])  # steps 2, 4, 6, 8: the best is step 4
    run = tmp_path / "run"
    cfg = TrainConfig(val_fraction=0.25, val_every=2, report_to="none", keep_checkpoints=10,
                      **{**FAST, "max_steps": 8, "save_every": 2})
    summary = train(build_policy("bc", "tiny", []), SyntheticTactile(16, size=(24, 32)), cfg, run)
    ckpts = run / "checkpoints"
    best_json = json.loads((ckpts / "best" / "best.json").read_text())
    assert best_json == {"metric": "val_loss", "value": 1.0, "step": 4}
    assert summary["best"] == {"metric": "val_loss", "value": 1.0}
    assert _ckpt_step(ckpts / "best") == 4 and _ckpt_step(ckpts / "last") == 8
    # the weights of step 4, loadable as a policy
    best = load_policy(ckpts / "best").model.state_dict()
    step4 = load_policy(ckpts / "step-0000004").model.state_dict()
    assert all(torch.equal(best[k], step4[k]) for k in best)
    last = load_policy(run).model.state_dict()  # run/policy: the final weights, what eval uses
    assert any(not torch.equal(best[k], last[k]) for k in best)


def test_resume_keeps_the_best_checkpoint(tmp_path, monkeypatch):
    _scripted_validation(monkeypatch, [3.0, 1.0, 2.0, 4.0])
    run = tmp_path / "run"
    cfg = TrainConfig(val_fraction=0.25, val_every=2, report_to="none", **{**FAST, "max_steps": 8})
    ds = SyntheticTactile(16, size=(24, 32))
    train(build_policy("bc", "tiny", []), ds, cfg, run, stop_after=5)  # validated at 2, 4; killed at 5
    assert json.loads((run / "checkpoints" / "best" / "best.json").read_text())["step"] == 4
    train(build_policy("bc", "tiny", []), ds, cfg, run, resume=True)  # 2.0 and 4.0 do not beat 1.0
    assert [r["val_loss"] for r in _log(run, "val")] == [3.0, 1.0, 2.0, 4.0]
    assert json.loads((run / "checkpoints" / "best" / "best.json").read_text())["step"] == 4
    assert _ckpt_step(run / "checkpoints" / "best") == 4


def test_resume_purges_the_tensorboard_steps_logged_after_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    fast = {**FAST, "max_steps": 6, "log_every": 1, "save_every": 2}
    cfg = TrainConfig(val_fraction=0.0, val_every=0, **fast)
    ds = SyntheticTactile(16, size=(24, 32))
    train(build_policy("bc", "tiny", []), ds, cfg, run, stop_after=3)  # logged 1..3, checkpoint at 2
    (run / "checkpoints" / "last").rename(run / "checkpoints" / "at3")  # resume from step 2 instead
    (run / "checkpoints" / "step-0000002").rename(run / "checkpoints" / "last")
    train(build_policy("bc", "tiny", []), ds, cfg, run, resume=True)
    assert [s for s, _ in _scalars(run)["train/loss"]] == [1, 2, 3, 4, 5, 6]  # step 3 once, not twice


def test_rollouts_log_closed_loop_success(tmp_path):
    from tla.eval.closed_loop import episode_seeds
    from tla.train.rollout import episode_plan

    run = tmp_path / "run"
    cfg = TrainConfig(val_fraction=0.0, val_every=0, rollout_every=2, rollout_episodes=3, **FAST)
    policy = build_policy("bc", "tiny", [])
    summary = train(policy, SimulatedSynthetic(16, policy_modality(policy)), cfg, run)
    rows = _log(run, "rollout")
    assert [r["step"] for r in rows] == [2, 4] and all(r["rollout_episodes"] == 3 for r in rows)
    assert all(0 <= r["rollout_success"] <= 1 for r in rows)
    assert all(1 <= r["rollout_attempts"] <= SIM.max_attempts for r in rows)
    assert {"split": "rollout", **summary["rollout"]} == rows[-1]
    assert [s for s, _ in _scalars(run)["rollout/success"]] == [2, 4]
    # three fixed episodes over the data's conditions (square and triangle at 2.0 mm), validation episodes:
    # none of them is one of tla eval's episodes (its seeds for base seeds 0-9, 500 per condition)
    data = SimulatedSynthetic(16, policy_modality(policy))
    plan = trainer.rollout_plan(load_policy(run), data, range(16), cfg)
    assert [(shape, c) for shape, c, _ in plan] == [("square", 2.0), ("triangle", 2.0), ("square", 2.0)]
    assert plan == trainer.rollout_plan(load_policy(run), data, range(16), cfg)  # fixed
    evaluated = {s for base in range(10) for s in episode_seeds(base, 500)}
    assert len({seed for *_, seed in plan}) == 3 and not {seed for *_, seed in plan} & evaluated
    assert not {s for *_, s in episode_plan([("square", 2.0)], 500, 0)} & evaluated


def test_rollouts_need_the_simulator_of_the_data(tmp_path):
    cfg = TrainConfig(rollout_every=2, report_to="none", **FAST)
    with pytest.raises(ValueError, match="rollout_every"):
        train(build_policy("bc", "tiny", []), SyntheticTactile(16, size=(24, 32)), cfg, tmp_path / "run")


def test_the_trainer_does_not_import_eval():
    """Layering: eval builds on train; the rollouts use the environment (tla.sim) directly."""
    code = "import sys, tla.train.trainer; sys.exit(any(m.startswith('tla.eval') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_sharded_backends_are_refused(tmp_path, monkeypatch):
    """Validation and checkpoints run on the main process with the whole model: FSDP would hang there."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    class Sharded(Accelerator):
        distributed_type = DistributedType.FSDP

    monkeypatch.setattr(trainer, "Accelerator", Sharded)
    with pytest.raises(ValueError, match="data parallel only"):
        trainer.make_accelerator(TrainConfig(report_to="none"), tmp_path)
