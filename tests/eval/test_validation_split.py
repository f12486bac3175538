"""`tla eval offline --split validation`: a run scored on the episodes it held out of its own training split
(the trainer's split), so settings are chosen there and never on a test split."""

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step BC run on the smoke data that holds a quarter of sp_train's episodes out."""
    from scaffold import small_bc_run

    return small_bc_run(tmp_path_factory.mktemp("validation"),
                        ["train.batch_size=4", "train.val_fraction=0.25", "train.seed=5"])


def test_validation_scores_exactly_the_held_out_episodes(trained, tmp_path):
    from tla.data.dataset import TactileDataset
    from tla.eval.offline import evaluate_offline, validation_indices
    from tla.train.trainer import episode_ids, split_train_val

    data, run = trained
    ds = TactileDataset(data, "sp_train")
    train_idx, val_idx = split_train_val(ds, 0.25, 5)
    split, held_out = validation_indices(run, data)
    assert split == "sp_train" and np.array_equal(held_out, val_idx) and len(held_out) > 0
    eps = episode_ids(ds)
    assert not set(eps[held_out]) & set(eps[train_idx])  # whole episodes, none seen in training
    # the run's policy/ and checkpoint folders find the same record
    assert np.array_equal(validation_indices(run / "checkpoints" / "last", data)[1], val_idx)

    m = evaluate_offline(run, data, "validation", tmp_path / "v", progress=False)
    assert m["split"] == "validation" and m["validation_of"] == "sp_train" and m["samples"] == len(val_idx)
    labels = [json.loads(line)["label"] for line in (tmp_path / "v" / "predictions.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(labels, np.round([ds[int(i)]["action"] for i in val_idx], 4))
    assert evaluate_offline(run, data, "validation", tmp_path / "v2", limit=1, progress=False)["samples"] == 1


def test_validation_refuses_other_data_and_runs_without_a_record(trained, tmp_path):
    from tla.eval.offline import validation_indices

    data, run = trained
    other = tmp_path / "other"
    shutil.copytree(data, other)
    info = json.loads((other / "meta" / "info.json").read_text())
    info["content_hash"] = "0" * 64  # another dataset's content
    (other / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="trained on .*, not on .*other"):
        validation_indices(run, other)
    bare = tmp_path / "bare"
    shutil.copytree(run / "policy", bare / "policy")  # a policy without its training record
    with pytest.raises(FileNotFoundError, match="needs the run's training record"):
        validation_indices(bare, data)
