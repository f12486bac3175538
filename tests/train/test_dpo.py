"""Preference tuning (DPO): pair ranking, the sequence log-probability, the loss at the reference, a DPO
stage that learns the preference, and `tla dpo` runs that resume and save a plain TLA run."""

import json
import math

import numpy as np
import pytest
import torch

from tla.policies.registry import load_policy
from tla.policies.tla import TLAPolicy
from tla.policies.tla.preference import (
    Pair,
    PairDataset,
    PreferencePolicy,
    dpo_loss,
    make_pairs,
    rank_candidates,
    sequence_logps,
)
from tla.train.config import TrainConfig
from tla.train.synthetic import SyntheticTactile
from tla.train.trainer import episode_ids, train

SMALL = ["composite_size=112", "model.tiny.vision_depth=1", "model.tiny.text_layers=1", "preprocess.contrast=false"]
SCALE = (100.0, 100.0, 100.0)


def test_rank_candidates_prefers_the_closest_and_rejects_the_farthest_or_unparseable():
    label = np.array([0.10, -0.20, 0.30])
    pair = rank_candidates(["[10, -20, 40]", "[10, -20, 30]", "[50, 50, 50]"], label, SCALE, 7)
    assert (pair.index, pair.chosen, pair.rejected) == (7, "[10, -20, 30]", "[50, 50, 50]")
    assert pair.l1_chosen == pytest.approx(0.0) and pair.l1_rejected == pytest.approx(0.4 + 0.7 + 0.2)
    pair = rank_candidates(["[10, -20, 40]", "no action here"], label, SCALE, 0)
    assert pair.rejected == "no action here" and math.isinf(pair.l1_rejected)
    assert Pair.from_dict(json.loads(json.dumps(pair.to_dict()))) == pair  # inf survives JSON
    # equally far (or equal) candidates: nothing to prefer
    assert rank_candidates(["[10, -20, 40]", "[10, -20, 20]"], label, SCALE, 0) is None
    assert rank_candidates(["bad", "worse"], label, SCALE, 0) is None


def test_dpo_loss_closed_form():
    lc, lr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, m = dpo_loss(lc, lr, rc, rr, beta=0.5)
    margins = 0.5 * ((lc - rc) - (lr - rr))  # [1.0, -0.5]
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(margins).mean()))
    assert m["reward_accuracy"] == 0.5 and m["reward_margin"] == pytest.approx(0.25)
    assert float(dpo_loss(lc, lr, lc, lr, beta=0.1)[0]) == pytest.approx(math.log(2))


def _sft(tmp_path, steps=40):
    """A briefly fine-tuned tiny TLA on synthetic data (its beams still disagree: pairs exist)."""
    ds = SyntheticTactile(32, size=(24, 32))
    policy = TLAPolicy.build("tiny", SMALL)
    cfg = TrainConfig(max_steps=steps, batch_size=8, lr=3e-3, val_fraction=0.25, val_every=0, log_every=10,
                      save_every=1000, report_to="none")
    train(policy, ds, cfg, tmp_path / "sft", {"policy": "tla", "preset": "tiny", "split": "sp_train"})
    return policy, ds


def test_sequence_logps_is_the_model_loss_summed(tmp_path):
    policy, ds = _sft(tmp_path, steps=5)
    policy.model.eval()
    items = [ds[0], ds[3]]
    batch = policy.processor.batch([it["frames"] for it in items], [it["shape"] for it in items],
                                   [it["answer"] for it in items])
    with torch.no_grad():
        logps = sequence_logps(policy.model, batch)
        for i in range(2):  # one sample at a time: the model's own mean cross-entropy over the answer tokens
            one = policy.processor.batch([items[i]["frames"]], [items[i]["shape"]], [items[i]["answer"]])
            tokens = int((one["labels"][:, 1:] != -100).sum())
            assert float(logps[i]) == pytest.approx(-float(policy.model(**one).loss) * tokens, rel=1e-5)


def test_dpo_starts_at_log2_and_learns_the_preference(tmp_path):
    policy, ds = _sft(tmp_path)
    pairs = make_pairs(policy, ds, range(len(ds)), candidates=4, progress=False)
    assert len(pairs) >= 16  # the undertrained model's beams disagree on most samples
    assert all(p.l1_chosen < p.l1_rejected for p in pairs)
    data = PairDataset(ds, pairs, episode_ids(ds))
    assert np.array_equal(data.episode_indices, ds.episode_indices[[p.index for p in pairs]])
    trainee = PreferencePolicy(policy, beta=0.1)
    batch = trainee.collate([data[i] for i in range(8)])
    policy.model.eval()
    with torch.no_grad():
        loss, _ = trainee.loss(policy.model, batch)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-4)  # the policy is its own reference
    cfg = TrainConfig(max_steps=30, batch_size=8, lr=1e-3, val_fraction=0.0, val_every=0, log_every=5,
                      save_every=1000, report_to="none")
    train(trainee, data, cfg, tmp_path / "dpo", {"policy": "tla"})
    policy.model.eval()
    with torch.no_grad():
        acc = [trainee.loss(policy.model, trainee.collate([data[j] for j in range(i, min(i + 8, len(data)))]))[1]
               ["reward_accuracy"] for i in range(0, len(data), 8)]
    assert np.mean(acc) > 0.9  # the tuned model now prefers the chosen answer of (nearly) every pair
    log = [json.loads(x) for x in (tmp_path / "dpo" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < math.log(2) and "reward_accuracy" in log[-1]
    assert isinstance(load_policy(tmp_path / "dpo"), TLAPolicy)  # what the stage saves is a plain TLA run


def test_tla_dpo_resumes_reuses_its_pairs_and_refuses_other_overrides(tmp_path, monkeypatch):
    from tla.train import cli as train_cli
    from tla.train.dpo import dpo_run

    _sft(tmp_path)
    monkeypatch.setattr(train_cli, "_dataset", lambda data, split, policy: SyntheticTactile(32, size=(24, 32)))
    out = tmp_path / "dpo"
    ov = ["dpo.samples=24", "dpo.val_samples=8", "train.batch_size=8", "train.epochs=2", "train.lr=1e-3",
          "train.report_to=none", "train.val_every=2", "train.save_every=1"]
    first = dpo_run(tmp_path / "sft", tmp_path, out, ov, progress=False, stop_after=2)
    assert not first["finished"] and first["pairs"]["train"]["asked"] == 24
    made = (out / "pairs.jsonl").read_text()
    with pytest.raises(ValueError, match="as recorded"):
        dpo_run(tmp_path / "sft", tmp_path, out, ["dpo.beta=0.5"], resume=True, progress=False)
    done = dpo_run(tmp_path / "sft", tmp_path, out, resume=True, progress=False)
    assert done["finished"] and (out / "pairs.jsonl").read_text() == made
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["stage"] == "dpo" and cfg["dpo"]["samples"] == 24 and cfg["train"]["lr"] == 1e-3
    # validation pairs come from the fine-tuning run's held-out episodes only
    from tla.train.dpo import sft_split

    ds = SyntheticTactile(32, size=(24, 32))
    val_episodes = set(ds.episode_indices[sft_split(tmp_path / "sft", ds)[1]])
    rows = [json.loads(x) for x in made.splitlines()[1:]]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all((ds.episode_indices[r["pair"]["index"]] in val_episodes) == (r["split"] == "val") for r in rows)
    assert isinstance(load_policy(out), TLAPolicy)
    with pytest.raises(ValueError, match="dpo.\\* and train.\\* overrides only"):
        dpo_run(tmp_path / "sft", tmp_path, tmp_path / "other", ["model.seed=1"], progress=False)

