"""`tla train --init-from RUN`: a run that starts from another run's trained weights (fine-tuning)."""

import json

import pytest
import torch

from tla.train.synthetic import SyntheticTactile

BC_SMALL = ["image_size=[24,32]", "embedding_size=8", "hidden_sizes=[8,8,8,8]", "head_hidden=16"]
TRAIN_SMALL = ["train.batch_size=4", "train.val_every=0"]


@pytest.fixture
def synthetic_data(monkeypatch):
    from tla.train import cli

    monkeypatch.setattr(cli, "_dataset", lambda data, split, policy: SyntheticTactile(16, size=(24, 32)))


def _weights(run):
    from tla.policies.registry import load_policy

    # parameters only: batch norm's running statistics move on any training forward pass, even at lr 0
    return {k: p.detach() for k, p in load_policy(run).model.named_parameters()}


def test_a_run_started_from_another_begins_at_its_weights_and_records_it(tmp_path, synthetic_data):
    from tla.train.cli import train_run

    source = tmp_path / "source"
    train_run(tmp_path, source, "bc", max_steps=3, overrides=BC_SMALL + TRAIN_SMALL)
    # lr 0: the optimizer moves nothing, so the new run's weights are the ones it started from
    train_run(tmp_path, tmp_path / "tuned", max_steps=1, overrides=TRAIN_SMALL + ["train.lr=0"], init_from=source)
    train_run(tmp_path, tmp_path / "fresh", "bc", max_steps=1, overrides=BC_SMALL + TRAIN_SMALL + ["train.lr=0"])
    src, tuned, fresh = _weights(source), _weights(tmp_path / "tuned"), _weights(tmp_path / "fresh")
    assert all(torch.equal(src[k], tuned[k]) for k in src)
    assert not all(torch.equal(src[k], fresh[k]) for k in src)
    cfg = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert cfg["policy"] == "bc"  # taken from the source run
    assert cfg["init_from"]["run"] == str(source.resolve()) and cfg["init_from"]["steps"] == 3
    assert json.loads((tmp_path / "fresh" / "config.json").read_text())["init_from"] is None


def test_init_from_mistakes_are_named_and_a_resume_keeps_the_source(tmp_path, synthetic_data):
    from tla.train.cli import train_run

    source = tmp_path / "source"
    train_run(tmp_path, source, "bc", max_steps=2, overrides=BC_SMALL + TRAIN_SMALL)
    with pytest.raises(ValueError, match="drop the policy overrides"):
        train_run(tmp_path, tmp_path / "a", max_steps=1, overrides=["embedding_size=4"], init_from=source)
    with pytest.raises(ValueError, match="is a bc run, not dp"):
        train_run(tmp_path, tmp_path / "b", "dp", max_steps=1, init_from=source)
    with pytest.raises(ValueError, match="not a finished training run"):
        train_run(tmp_path, tmp_path / "c", max_steps=1, init_from=tmp_path)
    run = tmp_path / "tuned"
    train_run(tmp_path, run, max_steps=2, overrides=TRAIN_SMALL, init_from=source)
    assert train_run(tmp_path, run, resume=True)["finished"]  # the recorded source, as recorded
    with pytest.raises(ValueError, match="changes init_from"):
        train_run(tmp_path, run, resume=True, init_from=tmp_path / "tuned")
