"""Loading (datasets + TactileDataset), clear errors, viewer, stats and export."""

import json
import shutil

import numpy as np
import pytest

from tla.data import store
from tla.data.dataset import TactileDataset


def test_tactile_dataset_items(smoke_ds):
    root, info = smoke_ds
    ds = TactileDataset(root, "mp_train", composite_size=90)
    h, w = info["image"]["height"], info["image"]["width"]
    item = ds[5]
    assert item["frames"].dtype == np.uint8 and item["frames"].shape == (8, h, w, 3)
    assert item["composite"].shape == (90, 90, 3) and item["composite"].dtype == np.uint8
    assert item["error"].dtype == np.float32 and item["error"].shape == (3,)
    assert item["action"].dtype == np.float32 and item["action"].shape == (3,)
    assert item["shape"] in ("square", "triangle") and item["clearance"] == 2.0
    assert item["instruction"].endswith("Predicted action: ") and item["answer"].startswith("[")
    for k in ("episode_index", "attempt_index", "sample_seed"):
        assert isinstance(item[k], int)
    assert "composite" not in TactileDataset(root, "mp_train")[5]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_field_modality_is_cached_whole_and_reads_the_same_in_any_order(smoke_ds, monkeypatch):
    """Shuffled training read one parquet row group per sample (the 8-group cache missed); a field column
    is small, so it is kept whole: each group is read once, and the items are the ones read in order."""
    root = smoke_ds[0]
    ds = TactileDataset(root, "mp_train", modality="marker_flow")
    assert ds._cache_groups == len(ds._groups) != 8
    reads = []
    real = ds._group
    monkeypatch.setattr(ds, "_group", lambda k: (reads.append(k) if k not in ds._cache else None) or real(k))
    order = np.random.default_rng(0).permutation(len(ds))
    shuffled = {int(i): ds[int(i)]["frames"] for i in np.concatenate([order, order])}
    assert sorted(reads) == list(range(len(ds._groups)))  # every group read exactly once over two epochs
    fresh = TactileDataset(root, "mp_train", modality="marker_flow")
    assert all(np.array_equal(fresh[i]["frames"], shuffled[i]) for i in range(len(ds)))
    assert TactileDataset(root, "mp_train")._cache_groups == 8  # camera images: a bounded cache
    monkeypatch.setattr("tla.data.dataset.FIELD_CACHE_BYTES", 0)  # too large to keep whole: bounded too
    assert TactileDataset(root, "mp_train", modality="marker_flow")._cache_groups == 8


def test_torch_dataloader_batches(smoke_ds):
    import torch

    ds = TactileDataset(smoke_ds[0], "sp_train", composite_size=60)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)))
    assert batch["frames"].shape[0] == 4 and batch["composite"].shape == (4, 60, 60, 3)
    assert len(batch["answer"]) == 4


def test_plain_datasets_load_dataset(smoke_ds):
    import datasets

    root, info = smoke_ds
    dd = datasets.load_dataset(str(root))  # split names from the README.md card
    assert {k: len(v) for k, v in dd.items()} == {k: v["samples"] for k, v in info["splits"].items()}
    one = datasets.load_dataset("parquet", data_dir=str(root / "data" / "sp_test"), split="train")
    ours = TactileDataset(root, "sp_test")
    assert len(one) == len(ours)
    row = one[3]
    assert row["answer"] == ours[3]["answer"]
    left_t2 = np.asarray(row["left_t2"].convert("RGB"))
    assert left_t2.shape == ours[3]["frames"][2].shape
    assert np.abs(left_t2.astype(int) - ours[3]["frames"][2]).mean() < 2  # PIL vs cv2 JPEG decoders


def test_clear_errors_for_bad_directories(smoke_ds, tmp_path):
    root, info = smoke_ds
    with pytest.raises(store.DatasetError, match="does not exist"):
        TactileDataset(tmp_path / "nope", "sp_train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(store.DatasetError, match="not a TLA tactile dataset"):
        TactileDataset(tmp_path / "empty", "sp_train")
    foreign = tmp_path / "foreign"
    (foreign / "meta").mkdir(parents=True)
    (foreign / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 30}))
    with pytest.raises(store.DatasetError, match="foreign"):
        TactileDataset(foreign, "sp_train")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    rel = info["splits"]["sp_train"]["files"][1]
    (copy / rel).write_bytes((copy / rel).read_bytes()[:500])
    with pytest.raises(store.DatasetError, match=r"file-001\.parquet is truncated.*rerun `tla data build`"):
        TactileDataset(copy, "sp_test")
    (copy / rel).unlink()
    with pytest.raises(store.DatasetError, match="is missing"):
        TactileDataset(copy, "sp_train")
    with pytest.raises(store.DatasetError, match="split 'train' is not in this dataset"):
        TactileDataset(root, "train")


def test_cli_view_stats_export(smoke_ds, tmp_path):
    from typer.testing import CliRunner

    from tla.data.cli import app
    from tla.data.text import decode_action

    root, _ = smoke_ds
    run = CliRunner().invoke
    r = run(app, ["view", str(root), "--split", "mp_test_ood", "--index", "3", "--out", str(tmp_path / "s.png"),
                  "--composite-size", "120"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.png").stat().st_size > 10_000
    r = run(app, ["view", str(root), "--split", "sp_test", "--out", str(tmp_path / "f.png"), "--modality", "marker_flow"])
    assert r.exit_code == 0 and (tmp_path / "f.png").stat().st_size > 10_000, r.output
    r = run(app, ["view", str(root), "--split", "sp_test", "--out", str(tmp_path / "m.png"), "--modality", "all"])
    assert r.exit_code == 0 and (tmp_path / "m.png").stat().st_size > 10_000, r.output
    r = run(app, ["view", str(root), "--split", "sp_test", "--out", str(tmp_path / "x.png"), "--modality", "flow"])
    words = " ".join(r.output.replace("│", " ").split())  # typer's error box, unwrapped
    assert r.exit_code == 2 and "'flow' is not one of 'rgb', 'marker_flow', 'depth', 'all'" in words
    r = run(app, ["stats", str(root), "--hist", str(tmp_path / "h.png")])
    assert r.exit_code == 0 and "mp_test_ood" in r.output and (tmp_path / "h.png").exists()
    r = run(app, ["export", str(root), "--out", str(tmp_path / "exp"), "--split", "sp_test", "--limit", "3",
                  "--composite-size", "96"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "exp" / "sp_test.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    m = lines[0]["messages"]
    assert m[0]["role"] == "user" and m[0]["content"].startswith("<image>Given the tactile images")
    assert np.allclose(decode_action(m[1]["content"]), lines[0]["action"], atol=0.005 + 1e-9)
    assert (tmp_path / "exp" / lines[0]["images"][0]).exists()
    assert "tla_sp_test" in json.loads((tmp_path / "exp" / "dataset_info.json").read_text())
    r = run(app, ["view", str(tmp_path / "missing"), "--split", "sp_train"])
    assert r.exit_code == 2 and "does not exist" in r.output
