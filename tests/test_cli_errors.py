"""Bad command lines end in one `error: ...` line and exit status 2, never a traceback; choices on the
command line mirror the registries they stand for."""

import sys
import typing

import pytest

from tla.cli import main


def run_tla(argv: list[str], capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["tla", *argv]
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = old
    out, err = capsys.readouterr()
    return e.value.code, out, err


def bad_command_lines(tmp):
    missing = str(tmp / "missing")
    return [
        (["--bogus"], "No such option"),
        (["train"], "Missing option '--data'"),
        (["train", "--policy", "xx", "--data", missing, "--out", str(tmp / "r")], "'xx' is not one of"),
        (["train", "--preset", "huge", "--data", missing, "--out", str(tmp / "r")], "'huge' is not one of"),
        (["train", "--data", missing, "--out", str(tmp / "r")], "does not exist"),
        (["train", "--data", missing, "--out", str(tmp / "r"), "--max-steps", "ten"], "--max-steps"),
        (["predict", "--run", missing, "--data", missing], "missing"),
        (["eval", "offline", "--run", missing, "--data", missing, "--out", str(tmp / "o")], "missing"),
        (["eval", "closed-loop", "--run", missing, "--out", str(tmp / "o")], "missing"),
        (["serve", "--run", missing], "missing"),
        (["reproduce", "--preset", "huge"], "'huge' is not one of"),
        (["reproduce", "--data", missing, "--out", str(tmp / "rep")], "is not a dataset"),
        (["sim", "preview", "--ex", "nan", "--out", str(tmp / "a.png")], "pose error"),
        (["sim", "preview", "--erz", "inf", "--out", str(tmp / "a.png")], "pose error"),
        (["sim", "preview", "--ex", "abc"], "valid number"),
        (["sim", "preview", "--shape", "star"], "star"),
        (["sim", "preview", "--clearance", "-1", "--out", str(tmp / "b.png")], "clearance must be a positive"),
        (["data", "build", "--preset", "smoke", "--out", str(tmp / "d"), "--set", "shard_size=0"], "shard_size"),
        (["data", "build", "--preset", "smoke", "--out", str(tmp / "d"), "--set", "clearance=-1"], "clearance"),
        (["data", "build", "--preset", "galaxy", "--out", str(tmp / "d")], "'galaxy' is not one of"),
        (["data", "export", missing, "--out", str(tmp / "e"), "--format", "zip"], "'zip' is not one of"),
        (["data", "export", missing, "--out", str(tmp / "e"), "--format", "lerobot"], "missing"),
        (["data", "view", missing], "missing"),
        (["data", "verify", missing], "missing"),
        (["config", "show", "--policy", "bc", "lr=3"], "unknown config key 'lr'"),
        (["export-model", missing, "--out", str(tmp / "m")], "missing"),
    ]


def test_every_bad_command_line_is_one_error_line_and_exit_2(tmp_path, capsys):
    cases = bad_command_lines(tmp_path)
    assert len(cases) >= 20
    for argv, expected in cases:
        code, out, err = run_tla(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, code, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (argv, err)
        assert expected in lines[0], (argv, lines[0])
    assert not (tmp_path / "d").exists() and not (tmp_path / "rep").exists()  # nothing was claimed


def test_help_version_and_config_show(capsys):
    import tla

    assert run_tla(["--version"], capsys)[:2] == (0, f"tla {tla.__version__}\n")
    code, out, _ = run_tla([], capsys)
    assert code == 0 and "reproduce" in out and "train" in out  # no arguments: the help
    code, out, _ = run_tla(["config", "show", "--policy", "tla", "--preset", "tiny", "train.lr=3e-4",
                            "model.tiny.text_layers=3"], capsys)
    shown = dict(line.split(" = ", 1) for line in out.strip().splitlines())
    assert code == 0 and shown["train.lr"] == "0.0003" and shown["model.tiny.text_layers"] == "3"
    assert shown["modality"] == "'marker_flow'" and shown["layout"] == "'composite'"
    code, out, _ = run_tla(["config", "show", "--policy", "dp", "--split", "mp_train"], capsys)
    shown = dict(line.split(" = ", 1) for line in out.strip().splitlines())
    from tla.train.cli import resolve_run

    train_cfg = resolve_run("dp", "tiny", "mp_train", [], None)[0]  # what `tla train` would use
    assert code == 0 and shown["train.epochs"] == repr(train_cfg.epochs) and "noise_samples" in shown


def test_command_line_choices_mirror_the_registries():
    from tla import config
    from tla.data.cli import EXPORT_FORMATS
    from tla.data.config import PRESETS as DATA_PRESETS
    from tla.experiments.reproduce import PRESETS as REPRODUCE_PRESETS
    from tla.policies.registry import POLICIES
    from tla.policies.tla.config import DECODES
    from tla.sim.modality import MODALITIES

    def args(t):
        return set(typing.get_args(t))

    assert args(config.PolicyName) == set(POLICIES)
    assert args(config.DataPresetName) == set(DATA_PRESETS)
    assert args(config.ReproducePresetName) == set(REPRODUCE_PRESETS)
    assert args(config.ViewModality) == {*MODALITIES, "all"}
    assert args(config.ExportFormat) == set(EXPORT_FORMATS)
    assert args(config.Decode) == set(DECODES)


def test_the_client_imports_only_what_the_base_install_provides():
    """`pip install "tla[client]"` (the base) must be enough for `import tla.client`: every third-party
    module it loads comes from a base dependency or something a base dependency requires."""
    import re
    import subprocess
    import tomllib
    from importlib import metadata
    from pathlib import Path

    def loaded_by(statement: str) -> set[str]:
        code = (f"import sys; before = set(sys.modules); {statement}; "
                "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        return set(out.split())

    # what the base dependencies load themselves (httpx imports click / rich when they happen to be there)
    own = loaded_by("import numpy, cv2, httpx")
    third_party = [m for m in sorted(loaded_by("import tla.client") - own)
                   if m not in sys.stdlib_module_names and m != "tla" and not m.startswith("_")]
    owners = metadata.packages_distributions()

    def name(req: str) -> str:
        return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    allowed, todo = set(), [name(r) for r in pyproject["project"]["dependencies"]]
    while todo:  # the base dependencies and everything they require (no extras)
        dist = todo.pop()
        if dist in allowed:
            continue
        allowed.add(dist)
        try:
            todo += [name(r) for r in (metadata.requires(dist) or []) if "extra ==" not in r]
        except metadata.PackageNotFoundError:  # a requirement for other Pythons (exceptiongroup on 3.10)
            continue
    stray = {m: owners.get(m) for m in third_party
             if not {d.lower().replace("_", "-") for d in owners.get(m, [m])} & allowed}
    assert not stray, f"tla.client loads modules the base install lacks: {stray}"
    assert {"numpy", "cv2", "httpx"} <= own


def test_the_tla_command_without_the_full_install_says_what_to_install(monkeypatch, capsys):
    import pytest

    from tla import entry

    monkeypatch.setitem(sys.modules, "tla.cli", None)  # as if typer / torch were not installed
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and 'pip install "tla[full]"' in err


def test_the_robot_side_client_and_tla_sim_import_light():
    """`tla.client` runs on a robot computer: it must not pull in the simulator's numba / scipy / shapely /
    gymnasium (nor torch); `import tla.sim` stays cheap and registers the env only with `tla.sim.env`."""
    import subprocess

    code = ("import sys, tla.client, tla.sim; heavy = ('numba', 'scipy', 'shapely', 'gymnasium', 'torch', "
            "'transformers'); print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import gymnasium as gym; print(gym.make('tla.sim.env:TLA/PegInHole-v0').spec.max_episode_steps)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "14"
