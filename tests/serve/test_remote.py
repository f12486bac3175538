"""The simulator as a robot closing the loop through the server gives the in-process evaluator's records."""

import json
from dataclasses import asdict
from functools import partial

from typer.testing import CliRunner

from tla.cli import app
from tla.client import PolicyClient, run_remote
from tla.config import apply_overrides
from tla.eval.closed_loop import run_closed_loop
from tla.policies.registry import load_policy
from tla.sim.config import SimConfig

SMALL_SIM = ["render.height=60", "render.width=80", "max_attempts=5"]  # small, short episodes


def test_remote_closed_loop_equals_in_process(server, bc_run):
    cfg = apply_overrides(SimConfig(), SMALL_SIM)
    local = run_closed_loop(partial(load_policy, bc_run), ["square", "triangle"], [2.0], 2, base_seed=3, sim_cfg=cfg,
                            progress=False)
    with PolicyClient(server) as c:
        remote = run_remote(c, ["square", "triangle"], [2.0], 2, base_seed=3, sim_cfg=cfg)
    assert [asdict(r) for r in remote] == [asdict(r) for r in local]
    assert sum(r.steps for r in local) > 2  # the episodes did take several actions


def test_sim_remote_cli(server, bc_run, tmp_path):
    cfg = apply_overrides(SimConfig(), SMALL_SIM)
    args = ["sim", "remote", "--url", server, "--episodes", "2", "--shapes", "square", "--clearances", "1.6",
            "--seed", "5", "--out", str(tmp_path)]
    for s in SMALL_SIM:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    local = run_closed_loop(partial(load_policy, bc_run), ["square"], [1.6], 2, base_seed=5, sim_cfg=cfg, progress=False)
    assert records == [json.loads(json.dumps(asdict(r))) for r in local]
    assert json.loads((tmp_path / "summary.json").read_text())[0]["episodes"] == 2
