"""Build determinism, resume, slices, labels and regeneration (smoke preset, small frames)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tla.data import store
from tla.data.build import build, merge, plan
from tla.data.dataset import TactileDataset
from tla.data.text import decode_action


def test_same_seed_same_content_with_1_and_2_workers(smoke_ds, smoke_cfg, tmp_path):
    _, info2 = smoke_ds
    info1 = build(smoke_cfg, tmp_path / "w1", workers=1, progress=False)
    assert info1["content_hash"] == info2["content_hash"]
    assert info1["files"] == info2["files"]
    seed1 = smoke_cfg.__class__(**{**smoke_cfg.__dict__, "seed": 1})
    assert build(seed1, tmp_path / "s1", max_shards=2, progress=False) is None
    for rel in ("data/sp_train/chunk-000/file-000.parquet", "data/sp_train/chunk-000/file-001.parquet"):
        assert store.sha256_file(tmp_path / "s1" / rel) != info2["files"][rel]["sha256"]


def test_resume_after_partial_and_damaged_build_equals_full_build(smoke_ds, smoke_cfg, tmp_path):
    root = tmp_path / "ds"
    assert build(smoke_cfg, root, workers=2, max_shards=4, progress=False) is None
    with pytest.raises(store.DatasetError, match="unfinished build"):
        TactileDataset(root, "sp_train")
    done = sorted(root.glob("data/*/chunk-000/file-*.parquet"))
    assert len(done) == 4
    # what a kill leaves behind: a writer's temp file and a truncated shard
    (done[0].parent / f".{done[0].name}.tmp-99999").write_bytes(b"PAR1 half")
    done[1].write_bytes(done[1].read_bytes()[:1000])
    info = build(smoke_cfg, root, workers=2, progress=False)
    assert info["content_hash"] == smoke_ds[1]["content_hash"]
    assert not list(root.rglob(".*.tmp-*"))


def test_killed_cli_build_resumes_to_the_same_content(smoke_ds, tmp_path):
    root = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tla.data.cli", "build", "--preset", "smoke", "--out", str(root), "--workers", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(root.glob("data/*/*/*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers, mid-way
    proc.wait()
    assert not (root / "meta" / "info.json").exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    assert TactileDataset(root, "sp_test").info["content_hash"] == smoke_ds[1]["content_hash"]


def test_slices_merge_to_the_full_build(smoke_ds, smoke_cfg, tmp_path):
    parts = [tmp_path / f"part{k}" for k in range(2)]
    for k, p in enumerate(parts):
        assert build(smoke_cfg, p, shard_index=k, num_shards=2, progress=False) is None
    info = merge(tmp_path / "merged", parts)
    assert info["content_hash"] == smoke_ds[1]["content_hash"]
    # a slice of another build is named (the error used to name its neighbour)
    import dataclasses

    other = tmp_path / "other"
    build(dataclasses.replace(smoke_cfg, seed=9), other, shard_index=1, num_shards=2, max_shards=1, progress=False)
    with pytest.raises(store.DatasetError, match=rf"{other} was built with a different config.*than {parts[0]}"):
        merge(tmp_path / "merged2", [parts[0], other])


def test_split_sizes_shapes_and_disjoint_episodes(smoke_ds, smoke_cfg):
    root, info = smoke_ds
    seeds = []
    for spec in smoke_cfg.splits:
        ds = TactileDataset(root, spec.name)
        assert len(ds) == spec.samples == info["splits"][spec.name]["samples"]
        shapes, counts = np.unique(ds._scalars["shape"], return_counts=True)
        assert set(shapes) == set(spec.shapes) and counts.max() - counts.min() <= 1  # equal shares
        seeds += list(ds._scalars["sample_seed"])
        pairs = set(zip(ds._scalars["episode_index"].tolist(), ds._scalars["attempt_index"].tolist()))
        assert len(pairs) == len(ds)
    assert len(set(seeds)) == len(seeds)  # no sample (hence no episode) shared between splits
    assert sum(t.samples for t in plan(smoke_cfg)) == info["total_samples"]


def test_answers_parse_back_and_labels_follow_eq_1_3(smoke_ds):
    from tla.sim import action_label

    root, info = smoke_ds
    scale = np.array(info["action_scale"])
    for split in info["splits"]:
        s = store.read_scalars(root, info["splits"][split]["files"])
        for answer, action in zip(s["answer"], s["action"]):
            assert np.all(np.abs(decode_action(answer, scale) - action) <= 0.5 / scale + 1e-9)
        np.testing.assert_allclose(s["action"], action_label(s["error"], 2.0), atol=1e-12)
        assert np.all(s["clearance"] == 2.0)
        assert np.all(np.abs(s["error"][:, :2]) <= 2.5) and np.all(np.abs(s["error"][:, 2]) <= 5.0)


def test_stats_json_matches_the_data(smoke_ds):
    import json

    root, info = smoke_ds
    stats = json.loads((root / "meta" / "stats.json").read_text())
    for split in info["splits"]:
        a = TactileDataset(root, split).actions
        np.testing.assert_allclose(stats[split]["action"]["mean"], a.mean(0), atol=1e-12)
        np.testing.assert_allclose(stats[split]["action"]["std"], a.std(0), atol=1e-12)
        assert stats[split]["count"] == len(a)


def test_a_sample_regenerates_bit_for_bit_from_its_seed(smoke_ds, smoke_cfg):
    import pyarrow.parquet as pq

    from tla.data.build import sim_config
    from tla.sim import simulate_attempt

    root, info = smoke_ds
    rel = info["splits"]["mp_test_ood"]["files"][-1]
    row = pq.read_table(root / rel).slice(2, 1).to_pylist()[0]
    res = simulate_attempt(sim_config(smoke_cfg), row["shape"], row["clearance"], np.array(row["error"]),
                           np.random.default_rng(row["sample_seed"]))
    assert not res.inserted and res.label.tolist() == row["action"]
    for col, frame in zip(store.FRAME_COLUMNS, res.frames):
        assert store.encode_image(frame, smoke_cfg.image_format, smoke_cfg.jpeg_quality) == row[col]["bytes"]


def test_config_mismatch_on_resume_is_refused(smoke_cfg, tmp_path):
    root = tmp_path / "ds"
    build(smoke_cfg, root, max_shards=1, progress=False)
    other = smoke_cfg.__class__(**{**smoke_cfg.__dict__, "seed": 7})
    with pytest.raises(store.DatasetError, match="different build"):
        build(other, root, progress=False)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("hi")
    with pytest.raises(store.DatasetError, match="not empty"):
        build(smoke_cfg, tmp_path / "foreign", progress=False)


def test_field_modalities_are_stored_and_read_back_exactly(smoke_ds, smoke_cfg):
    """A dataset item in the marker_flow / depth modality is the stored float16 field rendered, bit for bit
    the observation the env gives for the same attempt."""
    from tla.data.build import sim_config
    from tla.data.dataset import TactileDataset
    from tla.sim import modality, simulate_attempt

    root, info = smoke_ds
    assert info["fields"] == {"marker_flow": [8, *modality.FIELD_GRID, 2], "depth": [8, *modality.FIELD_GRID]}
    sim_cfg = sim_config(smoke_cfg)
    for name in ("marker_flow", "depth"):
        ds = TactileDataset(root, "sp_test", modality=name)
        item = ds[5]
        res = simulate_attempt(sim_cfg, item["shape"], item["clearance"], item["error"].astype(np.float64),
                               np.random.default_rng(item["sample_seed"]))
        assert item["frames"].shape == (8, sim_cfg.render.height, sim_cfg.render.width, 3)
        np.testing.assert_array_equal(item["frames"], modality.observe(res, sim_cfg.render, name))
    assert not np.array_equal(TactileDataset(root, "sp_test", modality="depth")[5]["frames"],
                              TactileDataset(root, "sp_test")[5]["frames"])


def test_a_dataset_without_fields_names_the_fix(smoke_cfg, tmp_path):
    import dataclasses

    from tla.data.dataset import TactileDataset

    cfg = dataclasses.replace(smoke_cfg, fields=(), splits=smoke_cfg.splits[:1])
    root = tmp_path / "rgb_only"
    info = build(cfg, root, progress=False)
    import pyarrow.parquet as pq

    assert "marker_flow" not in pq.read_schema(root / info["files"].popitem()[0]).names
    with pytest.raises(store.DatasetError, match="stores no 'marker_flow' field.*rebuild"):
        TactileDataset(root, "sp_train", modality="marker_flow")
    with pytest.raises(store.DatasetError, match="unknown field column"):
        build(dataclasses.replace(cfg, fields=("force",)), tmp_path / "bad", progress=False)
