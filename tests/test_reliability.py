"""Reliability: user errors get one clear line and leave nothing broken (a run folder, the env, a dataset
folder). Each test reproduces a failure found by trying to break the tools."""

import json
import shutil

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


# --- resume after a kill, determinism of the evaluation, strict JSON, empty requests -------------------
# (tests/test_fault_injection.py kills the real commands at random moments; these pin each failure down)

def _fast_cfg(**kw):
    from tla.train.config import TrainConfig

    base = {"max_steps": 6, "batch_size": 4, "log_every": 1, "save_every": 2, "num_workers": 0,
            "val_fraction": 0.25, "val_every": 3, "val_max_samples": 4, "report_to": "none"}
    return TrainConfig(**{**base, **kw})


def _log_rows(run):
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


def test_a_resumed_run_logs_every_step_once(tmp_path):
    """Killed after logging step 3 with the checkpoint at step 2, the resumed run logged 3 again (and the
    validation of step 3): the loss plot doubled back. Now the rows after the checkpoint are dropped, and a
    row cut by the kill too."""
    from tla.policies.registry import build_policy
    from tla.train.trainer import train

    run, cfg, ds = tmp_path / "run", _fast_cfg(), SyntheticTactile(16, size=(24, 32))
    train(build_policy("bc", "tiny", []), ds, cfg, run, stop_after=3)  # logged 1, 2, 3 + val 3; saved 2, 3
    ckpts = run / "checkpoints"
    (ckpts / "last").rename(ckpts / "at3")  # as if killed after logging step 3, before its checkpoint
    (ckpts / "step-0000002").rename(ckpts / "last")
    with (run / "train_log.jsonl").open("a") as f:
        f.write('{"step": 4, "loss": 0.')  # the kill cut this row
    train(build_policy("bc", "tiny", []), ds, cfg, run, resume=True)
    rows = _log_rows(run)
    assert [r["step"] for r in rows if "split" not in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if r.get("split") == "val"] == [3, 6]


def test_a_kill_between_the_renames_of_a_checkpoint_resumes_from_it(tmp_path):
    """publish() renames `last` to `last.old`, then `tmp` to `last`: killed between the two, --resume found
    no `last` and started again from step 0 (`tla reproduce` even deleted the run: --overwrite)."""
    from tla.policies.registry import build_policy
    from tla.train import checkpoint
    from tla.train.trainer import train

    run, cfg, ds = tmp_path / "run", _fast_cfg(), SyntheticTactile(16, size=(24, 32))
    train(build_policy("bc", "tiny", []), ds, cfg, run, stop_after=4)  # last at step 4
    ckpts = run / "checkpoints"

    def killed_between_the_renames():
        (ckpts / "last").rename(ckpts / "last.old")  # the first rename of the next save ...
        shutil.copytree(ckpts / "step-0000004", ckpts / "tmp")  # ... whose complete tmp never got renamed

    killed_between_the_renames()
    summary = train(build_policy("bc", "tiny", []), ds, cfg, run, resume=True, stop_after=1)
    assert summary["step"] == 5  # continued from step 4, not from 0
    assert (ckpts / "last").is_dir() and not (ckpts / "last.old").exists()
    assert [r["step"] for r in _log_rows(run) if "split" not in r] == [1, 2, 3, 4, 5]
    shutil.rmtree(ckpts / "tmp", ignore_errors=True)
    killed_between_the_renames()
    assert checkpoint.resumable(ckpts)  # what `tla reproduce` / `tla ablate` ask (else they --overwrite)


def test_a_kill_between_the_best_and_the_last_checkpoint_keeps_the_best(tmp_path, monkeypatch):
    """`last` was saved before `best` at the same step: killed between the two, the resumed run started
    after that step, never validated it again and lost its best checkpoint. Now `best` goes first."""
    from tla.policies.registry import build_policy
    from tla.train import checkpoint, trainer
    from tla.train.trainer import train

    values = iter([3.0, 1.0, 2.0, 4.0])  # validations at steps 2 (best), 4 (best), 6, 8
    monkeypatch.setattr(trainer, "validate", lambda *a, **k: {"val_loss": next(values)})
    publish = checkpoint.publish

    def killed_after_step_4(tmp, root, step, periodic, keep, name="last"):
        publish(tmp, root, step, periodic, keep, name)
        if step == 4:
            raise KeyboardInterrupt  # the kill, after the first checkpoint of step 4
    monkeypatch.setattr(checkpoint, "publish", killed_after_step_4)
    run, ds = tmp_path / "run", SyntheticTactile(16, size=(24, 32))
    cfg = _fast_cfg(max_steps=8, val_every=2, save_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(build_policy("bc", "tiny", []), ds, cfg, run)
    monkeypatch.setattr(checkpoint, "publish", publish)
    values = iter([1.0, 2.0, 4.0])  # the resumed run validates step 4 again (if it replays it), then 6, 8
    train(build_policy("bc", "tiny", []), ds, cfg, run, resume=True)
    best = json.loads((run / "checkpoints" / "best" / "best.json").read_text())
    assert best["step"] == 4 and best["value"] == 1.0
    assert [r["step"] for r in _log_rows(run) if r.get("split") == "val"] == [2, 4, 6, 8]


@pytest.fixture(scope="module")
def sp_data(tmp_path_factory):
    """The smoke dataset's sp_train and sp_test splits (built once for this module; not modified)."""
    import dataclasses

    from tla.data.build import build
    from tla.data.config import preset

    smoke = preset("smoke")
    root = tmp_path_factory.mktemp("sp") / "ds"
    build(dataclasses.replace(smoke, splits=smoke.splits[:2]), root, progress=False)
    return root


@pytest.fixture(scope="module")
def dp_run(sp_data, tmp_path_factory):
    from tla.train.cli import train_run

    run = tmp_path_factory.mktemp("dp") / "run"
    train_run(sp_data, run, "dp", max_steps=2, overrides=["image_size=[24,32]", "noise_samples=1",
                                                           "train.batch_size=4", "train.val_every=0"])
    return run


def test_offline_metrics_do_not_depend_on_the_thread_count(tmp_path, sp_data, dp_run):
    """DP's denoising loop gives other last bits on 1 and 2 torch threads, and evaluate_offline ran on
    whatever count the process had: `tla reproduce` after training (train.threads=1) and the same command
    resumed after the training stages (torch's default) wrote different Table I numbers."""
    import torch

    from tla.eval.offline import evaluate_offline

    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            m = evaluate_offline(dp_run, sp_data, "sp_test", tmp_path / f"t{n}", progress=False)
            assert torch.get_num_threads() == n  # restored after the evaluation
            results.append((json.dumps(m), (tmp_path / f"t{n}" / "predictions.jsonl").read_text()))
    finally:
        torch.set_num_threads(before)
    assert results[0] == results[1]  # as JSON text: NaN != NaN
    assert json.loads(results[0][0])["torch_threads"] == 1
    assert json.loads((tmp_path / "t2" / "run.json").read_text())["config"]["torch_threads"] == 1


def test_decode_is_refused_for_a_policy_without_beams(tmp_path, sp_data, dp_run):
    from tla.eval.closed_loop import evaluate_closed_loop
    from tla.eval.offline import evaluate_offline

    with pytest.raises(ValueError, match="decode='mean' applies to TLA runs only"):
        evaluate_offline(dp_run, sp_data, "sp_test", tmp_path / "o", progress=False, decode="mean")
    with pytest.raises(ValueError, match="constrained=True applies to TLA runs only"):
        evaluate_offline(dp_run, sp_data, "sp_test", tmp_path / "o", progress=False, constrained=True)
    with pytest.raises(ValueError, match="constrained=True applies to TLA runs only"):
        evaluate_closed_loop(dp_run, [2.0], ["square"], 1, tmp_path / "c", data=sp_data, progress=False,
                             constrained=True)
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def _strict_json(text: str):
    def bare(name):
        raise AssertionError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=bare)


def test_metrics_files_hold_null_not_nan_and_read_back(tmp_path, sp_data, dp_run, monkeypatch):
    """metrics.json (no GCR sample: the GCR L1 columns are NaN) and summary.json (no success: mean_steps is
    NaN) held bare NaN, which strict JSON readers refuse. results.json of `tla reproduce` / `tla ablate` was
    already fixed (tests/eval/test_reproduce.py asserts it holds no NaN); the report reads null as n/a."""
    from tla.eval import closed_loop, offline
    from tla.experiments.report import _cl_cell, _offline_row

    real = offline.offline_metrics
    monkeypatch.setattr(offline, "offline_metrics",
                        lambda *a, **k: {**real(*a, **k), "l1_x_gcr": float("nan")})
    offline.evaluate_offline(dp_run, sp_data, "sp_test", tmp_path / "off", progress=False)
    metrics = _strict_json((tmp_path / "off" / "metrics.json").read_text())
    assert metrics["l1_x_gcr"] is None
    assert "n/a" in _offline_row("DP", metrics, (0.0, 0.0, 0.0, 0.0))  # the report reads null back
    failed = closed_loop.EpisodeRecord("square", 2.0, 1, False, 3, 3)
    rows = closed_loop.save_results([failed], tmp_path / "cl")
    assert np.isnan(rows[0]["mean_steps"])  # the returned rows (printed tables) keep the float
    summary = _strict_json((tmp_path / "cl" / "summary.json").read_text())
    assert summary[0]["mean_steps"] is None and "n/a" in _cl_cell(summary[0], (0, 0.0))


def test_zero_episodes_are_refused_before_anything_is_written(tmp_path):
    """`tla eval closed-loop --episodes 0` wrote an empty summary.json, then crashed in the trajectory plot;
    `tla sim episodes --episodes 0` wrote it and printed an empty table."""
    import os
    import subprocess
    import sys

    from tla.eval.closed_loop import run_closed_loop
    from tla.policies.oracle import OraclePolicy

    for args in (["eval", "closed-loop", "--run", str(tmp_path / "run"), "--episodes", "0", "--out",
                  str(tmp_path / "a")],
                 ["sim", "episodes", "--episodes", "0", "--no-observe", "--out", str(tmp_path / "b")]):
        r = subprocess.run([sys.executable, "-m", "tla.cli", *args], capture_output=True, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert lines[0].startswith("error: ") and "'--episodes'" in lines[0], (args, r.stderr)
        assert "greater than or equal to 1" in lines[0], (args, r.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="episodes must be >= 1"):  # the API, for callers of the evaluator
        run_closed_loop(OraclePolicy, ["square"], [2.0], 0, observe=False)
