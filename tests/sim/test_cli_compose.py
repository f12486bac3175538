import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tla.cli import app
from tla.config import ConfigError, apply_overrides, from_dict, to_dict
from tla.sim import SimConfig
from tla.sim.compose import check_frames, make_composite

runner = CliRunner()


def test_preview_writes_a_png(tmp_path):
    out = tmp_path / "sheet.png"
    res = runner.invoke(app, ["sim", "preview", "--shape", "triangle", "--ex", "1.9", "--out", str(out),
                              "--set", "render.height=120", "--set", "render.width=160"])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_rejects_unknown_shape():
    res = runner.invoke(app, ["sim", "preview", "--shape", "star"])
    assert res.exit_code != 0 and "unknown peg shape" in res.output


def test_bench_prints_json():
    res = runner.invoke(app, ["sim", "bench", "--json", "--n", "3", "--repeats", "1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output.strip().splitlines()[-1])
    assert data["sequences_per_second_per_core"] > 0 and data["frames_per_sequence"] == 8


def test_composite_layout():
    frames = np.stack([np.full((30, 40, 3), 10 * (i + 1), np.uint8) for i in range(8)])
    comp = make_composite(frames, 90)
    assert comp.shape == (90, 90, 3)
    cells = [comp[r * 30 + 15, c * 30 + 15, 0] for r in range(3) for c in range(3)]
    assert cells == [10, 20, 30, 40, 50, 60, 70, 80, 255]  # L0 L1 L2 / L3 R0 R1 / R2 R3 white
    with pytest.raises(ValueError, match=r"shape \(8, H, W, 3\)"):
        check_frames(frames[:7])


def test_config_overrides_round_trip_and_errors():
    cfg = apply_overrides(SimConfig(), ["gel.E=0.3", "render.height=100", "randomize.E=0.1,0.2"])
    assert cfg.gel.E == 0.3 and cfg.render.height == 100 and cfg.randomize.E == (0.1, 0.2)
    assert from_dict(SimConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(ConfigError, match="unknown config key 'gel.stiffness'"):
        apply_overrides(cfg, ["gel.stiffness=2"])
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["render.height=abc"])


def test_optional_values_are_parsed_with_their_type():
    """`int | None` fields (PEP 604) read a command-line string as an int, and none as None (the string
    '5' used to pass through, and the trainer multiplied a str)."""
    from tla.train.config import TrainConfig

    assert apply_overrides(TrainConfig(), ["max_steps=5"]).max_steps == 5
    assert apply_overrides(TrainConfig(max_steps=3), ["max_steps=none"]).max_steps is None
    with pytest.raises(ConfigError, match="max_steps: cannot read 'five'"):
        apply_overrides(TrainConfig(), ["max_steps=five"])


def test_sim_episodes_runs_the_oracle_through_the_evaluator(tmp_path):
    """`tla sim episodes` is defined above the simulator (tla.eval.cli) and registered under `sim`: the
    simulator package imports nothing from the evaluator."""
    import ast
    import json
    import pathlib

    from typer.testing import CliRunner

    from tla.cli import app

    r = CliRunner().invoke(app, ["sim", "episodes", "--episodes", "3", "--no-observe", "--shapes", "square",
                                 "--clearances", "2.0", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "summary.json").read_text())[0]["success"] == 1.0
    # --no-fallback: the paper's labels alone stall on the round peg (they are zero inside the +-c/2 box)
    r = CliRunner().invoke(app, ["sim", "episodes", "--episodes", "3", "--no-observe", "--no-fallback", "--shapes",
                                 "round", "--clearances", "2.0", "--workers", "1", "--out", str(tmp_path / "nf")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "nf" / "summary.json").read_text())[0]["success"] == 0.0
    assert json.loads((tmp_path / "nf" / "run.json").read_text())["config"]["policy"] == "paper labels only (no fallback)"
    assert json.loads((tmp_path / "run.json").read_text())["config"]["policy"] == "oracle"
    sim_dir = pathlib.Path(__import__("tla.sim", fromlist=["x"]).__file__).parent
    for path in sim_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("tla.eval", "tla.policies", "tla.train", "tla.serve", "tla.data")), (
                    f"{path.name} imports {node.module}")
