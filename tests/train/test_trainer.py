"""Shared trainer on the tiny TLA: overfitting, save/load, exact resume, validation split, CLI."""

import json

import numpy as np
import pytest
import torch

from tla.policies.base import make_batch
from tla.policies.collapse import check_collapse
from tla.policies.registry import load_policy
from tla.policies.tla import TLAPolicy
from tla.train.config import TrainConfig, train_preset
from tla.train.synthetic import SyntheticTactile
from tla.train.trainer import split_train_val, train

# fast on CPU; the synthetic label is the frames' brightness, which the contrast step would remove
SMALL = ["composite_size=112", "model.tiny.vision_depth=1", "model.tiny.text_layers=1", "preprocess.contrast=false"]
FAST = dict(val_fraction=0.0, val_every=0, log_every=5, save_every=1000)


def test_tiny_overfits_32_samples_then_reloads_identically(tmp_path):
    """Tiny TLA trained on 32 synthetic samples (8 actions, label visible in the image) answers every one
    exactly; the saved run then reloads with identical weights and predictions."""
    run = tmp_path / "run"
    ds = SyntheticTactile(32, size=(24, 32))
    policy = TLAPolicy.build("tiny", SMALL + ["generate.num_beams=1"])
    cfg = TrainConfig(max_steps=150, batch_size=8, lr=3e-3, **FAST)
    summary = train(policy, ds, cfg, run, {"policy": "tla", "preset": "tiny"})
    assert summary["finished"]
    items = [ds[i] for i in range(len(ds))]
    pred = policy.predict(make_batch(np.stack([it["frames"] for it in items]), [it["shape"] for it in items]))
    assert pred.texts == [it["answer"] for it in items]
    assert pred.parse_ok.all()
    assert not check_collapse(pred.actions).collapsed  # 8 answers in 32 samples: the guard stays quiet
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.05 and {"lr", "samples_per_s", "eta_s"} <= set(log[-1])

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["policy"] == "tla" and cfg["train"]["max_steps"] == 150
    assert (run / "checkpoints" / "last" / "trainer_state.pt").exists()
    loaded = load_policy(run)
    obs = np.stack([ds[i]["frames"] for i in range(8)])
    shapes = [ds[i]["shape"] for i in range(8)]
    batch = make_batch(obs, shapes)
    for beams in (1, 3):
        a, b = policy.predict(batch, num_beams=beams), loaded.predict(batch, num_beams=beams)
        assert a.texts == b.texts and np.array_equal(a.actions, b.actions)
    sa, sb = policy.model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    greedy = policy.predict(batch).actions  # the config's num_beams=1
    assert np.array_equal(load_policy(run / "checkpoints" / "last").predict(batch).actions, greedy)


# lora: dropout draws test the RNG restore too; aux: the auxiliary action head checkpoints with the model
@pytest.mark.parametrize("mode", ["full", "lora", "full+aux"])
def test_resume_reproduces_uninterrupted_weights(tmp_path, mode):
    ds = SyntheticTactile(32, size=(24, 32))
    ov = SMALL + [f"model.train_mode={mode.split('+')[0]}", "model.lora_dropout=0.1"]
    ov += ["action_aux_weight=0.5"] if mode.endswith("aux") else []
    cfg = TrainConfig(
        max_steps=6,
        batch_size=4,
        grad_accum=2,
        lr=1e-3,
        val_fraction=0.25,
        val_every=0,
        log_every=1,
        save_every=2,
    )
    straight = TLAPolicy.build("tiny", ov)
    train(straight, ds, cfg, tmp_path / "a")
    part = TLAPolicy.build("tiny", ov)
    s1 = train(part, ds, cfg, tmp_path / "b", stop_after=3)  # "killed" after step 3
    assert s1["step"] == 3 and not s1["finished"]
    resumed = TLAPolicy.build("tiny", ov)  # a fresh process would rebuild the policy from the preset
    s2 = train(resumed, ds, cfg, tmp_path / "b", resume=True)
    assert s2["step"] == 6 and s2["finished"]
    sa, sb = straight.model.state_dict(), resumed.model.state_dict()
    assert max((sa[k] - sb[k]).abs().max().item() for k in sa) <= 1e-6
    assert any("action_aux_head" in k for k in sa) == mode.endswith("aux")
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        "last",
        "step-0000004",
        "step-0000006",
    ]


def test_validation_split_is_seeded_and_disjoint_by_episode():
    ds = SyntheticTactile(40)
    tr, va = split_train_val(ds, 0.2, seed=3)
    assert len(va) == 8 and len(set(tr) | set(va)) == 40
    assert not set(ds.episode_indices[tr]) & set(ds.episode_indices[va])
    _, va2 = split_train_val(ds, 0.2, seed=3)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, split_train_val(ds, 0.2, seed=4)[1])


def test_presets():
    tiny, paper = train_preset("tiny"), train_preset("paper", ["lr=2e-4"])
    assert paper.lr == 2e-4 and paper.epochs == 20 and tiny.batch_size % tiny.grad_accum == 0


def test_cli_train_and_predict(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tla.train import cli

    monkeypatch.setattr(cli, "_dataset", lambda data, split, policy: SyntheticTactile(16, size=(24, 32)))
    runner = CliRunner()
    out = tmp_path / "run"
    r = runner.invoke(
        cli.app,
        [
            "train",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
            "--max-steps",
            "2",
            *SMALL,
            "train.batch_size=4",
            "train.val_every=0",
        ],
    )
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["policy"] == "tla" and cfg["policy_config"]["model"]["tiny"]["text_layers"] == 1
    assert cfg["policy_config"]["composite_size"] == 112 and "transformers" in cfg["versions"]
    r = runner.invoke(
        cli.app, ["predict", "--run", str(out), "--data", str(tmp_path), "--limit", "3", "--json"]
    )
    assert r.exit_code == 0, r.output
    rows = [json.loads(line[line.index("{") :]) for line in r.output.splitlines() if '{"index"' in line]
    assert len(rows) == 3 and {"action", "label", "text", "parse_ok"} <= set(rows[0])


@pytest.mark.parametrize("name", ["bc", "dp"])
def test_trainer_is_generic_over_registered_policies(tmp_path, name):
    from tla.policies.registry import POLICIES, build_policy

    if name not in POLICIES:
        pytest.skip(f"{name} not registered")
    policy = build_policy(name, "tiny", [])
    ds = SyntheticTactile(16, size=(24, 32))
    summary = train(policy, ds, TrainConfig(max_steps=2, batch_size=4, **FAST), tmp_path, {"policy": name})
    assert summary["finished"]
    loaded = load_policy(tmp_path)
    obs = np.stack([ds[i]["frames"] for i in range(2)])
    assert loaded.predict(make_batch(obs, ["square", "triangle"])).actions.shape == (2, 3)


def test_validation_reports_a_collapsed_policy_loudly(tmp_path, capsys):
    """Two steps from random weights: the tiny TLA writes unparseable text, every answer falls back to the
    zero action, and the trainer flags the run as collapsed in its log, its summary and on the console."""
    ds = SyntheticTactile(40, size=(24, 32))
    policy = TLAPolicy.build("tiny", SMALL + ["generate.num_beams=1", "generate.max_new_tokens=4"])
    cfg = TrainConfig(max_steps=2, batch_size=8, val_fraction=0.5, val_every=2, val_max_samples=16,
                      log_every=1, save_every=1000)
    summary = train(policy, ds, cfg, tmp_path / "run", {"policy": "tla"})
    assert summary["collapsed"] is True
    val = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines() if '"val"' in x]
    assert val[-1]["val_collapsed"] is True and val[-1]["val_modal_share"] >= 0.9
    assert "COLLAPSED" in capsys.readouterr().err


def test_the_data_loader_worker_ends_with_the_run(tmp_path):
    """`tla reproduce` trains six models in one process: each run's loader worker (~1 GB) must end with it,
    not linger until a garbage collection."""
    import os

    import psutil

    from tla.policies.bc.policy import BCPolicy

    cfg = TrainConfig(max_steps=3, batch_size=4, val_fraction=0.0, val_every=0, save_every=1000, num_workers=1)
    before = len(psutil.Process(os.getpid()).children())
    train(BCPolicy(), SyntheticTactile(16, size=(24, 32)), cfg, tmp_path / "run", {"policy": "bc"})
    assert len(psutil.Process(os.getpid()).children()) == before


def test_a_text_policy_with_another_action_scale_than_its_dataset_is_refused():
    """The answer column (and every chat export) is written at the dataset's scale; a TLA trained at
    another scale would answer numbers that no reader of that data agrees with."""
    from types import SimpleNamespace

    from tla.train.cli import check_action_scale

    policy = SimpleNamespace(cfg=SimpleNamespace(scale=(100.0, 100.0, 100.0)))
    check_action_scale(policy, SimpleNamespace(info={"action_scale": [100, 100, 100]}))  # same: fine
    check_action_scale(SimpleNamespace(cfg=SimpleNamespace()), SimpleNamespace(info={"action_scale": [1, 1, 1]}))
    with pytest.raises(ValueError, match=r"differs from the dataset's \[10, 10, 100\].*scale=\[10, 10, 100\]"):
        check_action_scale(policy, SimpleNamespace(info={"action_scale": [10, 10, 100]}))
