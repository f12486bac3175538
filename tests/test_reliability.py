"""Reliability: user errors get one clear line and leave nothing broken (a run folder, the env, a dataset
folder). Each test reproduces a failure found by trying to break the tools."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tla.train.synthetic import SyntheticTactile

BC_SMALL = ["image_size=[24,32]", "embedding_size=8", "hidden_sizes=[8,8,8,8]", "head_hidden=16",
            "train.batch_size=4", "train.val_every=0"]


@pytest.fixture
def synthetic_data(monkeypatch):
    from tla.train import cli

    monkeypatch.setattr(cli, "_dataset", lambda data, split, policy: SyntheticTactile(16, size=(24, 32)))


def test_a_run_folder_is_never_silently_reused(tmp_path, synthetic_data):
    """`tla train --policy dp --out <a BC run>` overwrote it and mixed the logs; with --resume the new
    --policy was silently ignored."""
    from tla.train.cli import train_run

    run = tmp_path / "run"
    train_run(tmp_path, run, "bc", max_steps=2, overrides=BC_SMALL)
    log = (run / "train_log.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a bc run; pass --resume.*--overwrite"):
        train_run(tmp_path, run, "dp", max_steps=2)
    assert (run / "train_log.jsonl").read_text() == log and json.loads((run / "config.json").read_text())["policy"] == "bc"
    with pytest.raises(ValueError, match=r"changes policy 'bc' -> 'dp'"):
        train_run(tmp_path, run, "dp", max_steps=2, resume=True)
    with pytest.raises(ValueError, match=r"max_steps 2 -> 5"):
        train_run(tmp_path, run, max_steps=5, resume=True)
    assert train_run(tmp_path, run, resume=True)["finished"]  # as recorded: nothing to redo
    train_run(tmp_path, run, "dp", max_steps=1, overwrite=True,
              overrides=["image_size=[24,32]", "noise_samples=1", "train.batch_size=4", "train.val_every=0"])
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["policy"] == "dp" and len((run / "train_log.jsonl").read_text().splitlines()) <= 2
    with pytest.raises(ValueError, match="holds no run"):
        train_run(tmp_path, tmp_path / "empty", resume=True)


def test_the_command_line_ends_user_errors_in_one_line(tmp_path):
    """41 of 60 bad command lines printed tracebacks; `--ex nan` gave a GEOSException."""
    import os
    import subprocess
    import sys

    def tla(*args):
        return subprocess.run([sys.executable, "-m", "tla.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)

    for args, expected in (
        (["sim", "preview", "--ex", "nan", "--out", str(tmp_path / "a.png")], "pose error"),
        (["sim", "preview", "--clearance", "-1", "--out", str(tmp_path / "b.png")], "clearance must be a positive"),
        (["data", "build", "--preset", "smoke", "--out", str(tmp_path / "d"), "--set", "shard_size=0"],
         "shard_size must be >= 1"),
        (["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")], "does not exist"),
    ):
        r = tla(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr)
        assert lines[-1].startswith("error: ") and expected in lines[-1], (args, r.stderr)
    assert not (tmp_path / "d").exists()  # the bad build claimed no folder: the corrected rerun may use it


def test_a_killed_build_json_write_does_not_lock_the_folder(tmp_path):
    from tla.data.build import build
    from tla.data.config import preset

    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / ".build.json.tmp-1234").write_text("{")
    cfg = preset("smoke")
    assert build(cfg, root, max_shards=1, progress=False) is None  # resumable build started, not refused
    assert (root / "meta" / "build.json").exists() and not (root / "meta" / ".build.json.tmp-1234").exists()


def test_the_env_rejects_bad_actions_and_options_and_stays_usable():
    """After step([nan, 0, 0]) every later step raised; after reset(options={"clearance": -1}) every plain
    reset failed too."""
    from tla.sim.env import PegInHoleEnv

    env = PegInHoleEnv(observe=False)
    _, info = env.reset(seed=0)
    for bad in ([np.nan, 0, 0], [0, np.inf, 0], [1, 2], "left"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    np.testing.assert_array_equal(env._info(False)["error"], info["error"])  # the state did not move
    env.step([0.0, 0.0, 0.0])
    for options, match in (({"clearance": -1}, "clearance"), ({"clearance": "wide"}, "clearance"),
                           ({"shape": "star"}, "unknown peg shape"), ({"error": [0, np.nan, 0]}, "finite"),
                           ({"speed": 2}, "unknown reset option")):
        with pytest.raises(ValueError, match=match):
            env.reset(seed=0, options=options)
    assert env.clearance == 2.0 and env.shape == "square"
    _, again = env.reset(seed=0)
    np.testing.assert_array_equal(again["error"], info["error"])  # the same episode as before the bad calls


def test_cli_runner_train_refusal_is_a_clean_exit(tmp_path, synthetic_data):
    from tla.cli import app, user_error
    from tla.train.cli import train_run

    run = tmp_path / "run"
    train_run(tmp_path, run, "bc", max_steps=1, overrides=BC_SMALL)
    r = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(run), "--policy", "dp"])
    assert r.exit_code != 0 and user_error(r.exception) and "already holds a bc run" in user_error(r.exception)


def test_a_corrupt_shard_is_named_on_load_and_rebuilt_on_resume(tmp_path):
    """64 flipped bytes inside a JPEG passed: the rerun said "dataset complete" and `tla predict` returned
    another action with exit 0. Now: loading names the file, `tla data verify` too, and the build rebuilds
    exactly that shard, bit for bit."""
    import dataclasses

    from tla.data import store
    from tla.data.build import build
    from tla.data.cli import app as data_app
    from tla.data.config import preset
    from tla.data.dataset import TactileDataset

    smoke = preset("smoke")
    cfg = dataclasses.replace(smoke, splits=smoke.splits[:2])
    root = tmp_path / "ds"
    info = build(cfg, root, progress=False)
    TactileDataset(root, "sp_test")  # verified once: the cache holds its files
    rel = info["splits"]["sp_test"]["files"][0]
    original = (root / rel).read_bytes()
    data = bytearray(original)
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    (root / rel).write_bytes(bytes(data))
    with pytest.raises(store.DatasetError, match=rf"corrupt or missing shard.*{rel}.*rerun the `tla data build`"):
        TactileDataset(root, "sp_test")
    TactileDataset(root, "sp_train")  # the other split is intact and opens
    r = CliRunner().invoke(data_app, ["verify", str(root)])
    assert r.exit_code == 2 and rel in r.output
    assert build(cfg, root, progress=False)["content_hash"] == info["content_hash"]
    assert (root / rel).read_bytes() == original
    r = CliRunner().invoke(data_app, ["verify", str(root)])
    assert r.exit_code == 0 and "ok" in r.output
