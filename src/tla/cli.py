"""The single `tla` command line: one sub-command per job."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tla.config import PolicyName, ReproducePresetName, TrainPresetName

app = typer.Typer(no_args_is_help=True, add_completion=False, help="TLA: tactile peg-in-hole, from simulator to policy.")


def _print_version(value: bool) -> None:
    if value:
        import tla

        print(f"tla {tla.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the package version and exit")) -> None:
    """TLA: tactile peg-in-hole, from simulator to policy."""


config_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Show resolved configs.")
app.add_typer(config_app, name="config")


def flat_items(value, prefix: str = "") -> list[tuple[str, object]]:
    """A nested config dict as (dotted key, value) pairs, the keys `tla train` overrides take."""
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in flat_items(v, f"{prefix}{k}.")]
    return [(prefix[:-1], value)]


@config_app.command("show")
def config_show(
    policy: PolicyName = typer.Option("tla", help="registered policy"),
    preset: TrainPresetName = typer.Option("tiny", help="tiny (CPU) or paper"),
    split: str = typer.Option("sp_train", help="training split (multi-peg splits train fewer epochs)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides, as `tla train` takes them"),
) -> None:
    """Every config key of a `tla train` run with its resolved value: the policy's (`key=value` on the
    command line) and the trainer's (`train.key=value`). Builds no model."""
    from tla.config import to_dict
    from tla.policies.registry import preset_config
    from tla.train.cli import _split_overrides, train_config

    train_ov, policy_ov = _split_overrides(list(overrides or []))
    for key, value in flat_items(to_dict(preset_config(policy, preset, policy_ov))):
        print(f"{key} = {value!r}")
    for key, value in flat_items(to_dict(train_config(policy, preset, split, train_ov)), "train."):
        print(f"{key} = {value!r}")

# --- sub-command registration (one line per job; each module exposes a typer app or a command) ---
from tla.sim.cli import app as sim_app  # noqa: E402

app.add_typer(sim_app, name="sim", help="Tactile peg-in-hole simulator: preview, benchmark, episodes.")
from tla.train.cli import predict_cmd, train_cmd  # noqa: E402

app.command("train")(train_cmd)
app.command("predict")(predict_cmd)
from tla.train.dpo import dpo_cmd  # noqa: E402

app.command("dpo")(dpo_cmd)
from tla.data.cli import app as data_app  # noqa: E402

app.add_typer(data_app, name="data", help="Tactile-action dataset: build, merge, view, stats, export.")
from tla.eval.cli import app as eval_app  # noqa: E402
from tla.eval.cli import oracle_episodes  # noqa: E402

sim_app.command("episodes")(oracle_episodes)  # lives above the simulator: it runs the evaluator
app.add_typer(eval_app, name="eval", help="Offline metrics (Tables I, II, Fig. 4) and closed-loop trials (III, IV).")
from tla.serve.cli import remote_cmd, serve_cmd  # noqa: E402
from tla.pretrain.cli import pretrain_cmd  # noqa: E402

app.command("pretrain")(pretrain_cmd)

app.command("serve")(serve_cmd)
sim_app.command("remote")(remote_cmd)


@app.command("export-model")
def export_model_cmd(
    run: Path = typer.Argument(..., help="a TLA run (or checkpoint / policy folder)"),
    out: Path = typer.Option(..., help="new folder for the Hugging Face model"),
    merge: bool = typer.Option(False, help="LoRA runs: merge the adapter into the base (else: adapter + base reference)"),
    push_to_hub: str = typer.Option(None, help="also upload the folder to this Hub repo id (needs a token)"),
    base_model: str = typer.Option(None, help="the base's Hub id, for the card and the adapter (default: model.path)"),
    dataset: list[str] = typer.Option(None, help="dataset id(s) for the card (default: the run's dataset folder name)"),
    metrics: list[Path] = typer.Option(None, help="offline metrics.json file(s) for the card (default: found next to the run)"),
):
    """A TLA run as a Hugging Face model folder: weights, tokenizer, image processor, tla_config.json, card."""
    from tla.policies.export import export_model

    print(export_model(run, out, merge, base_model=base_model, datasets=dataset or None,
                       metrics=metrics or None, push_to_hub=push_to_hub))


@app.command()
def demo(
    out: Path = typer.Option(Path("outputs/demo"), help="output folder"),
    episodes: int = typer.Option(50, help="closed-loop episodes per condition"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(2),
):
    """A tour of the simulator (~1 min): preview sheets of every peg shape, then closed-loop oracle
    episodes over all shapes and the three clearances. The main job (`make demo`) is
    `tla reproduce --preset tiny`."""
    import numpy as np

    from tla.eval.closed_loop import run_closed_loop, save_results
    from tla.policies.oracle import OraclePolicy
    from tla.runinfo import write_run_metadata
    from tla.sim.cli import console, print_summary
    from tla.sim.config import SimConfig
    from tla.sim.geometry import SHAPES
    from tla.sim.preview import preview_sheet
    from tla.sim.simulator import simulate_attempt

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    cfg = SimConfig()
    write_run_metadata(out, cfg, seed)
    for i, shape in enumerate(SHAPES):
        res = simulate_attempt(cfg, shape, 2.0, [1.8, 0.6, 3.0], np.random.default_rng([seed, i]))
        console.print(f"preview: {preview_sheet(cfg, res, out / f'preview_{shape}.png')}")
    recs = run_closed_loop(OraclePolicy, list(SHAPES), [2.0, 1.6, 1.0], episodes, base_seed=seed, sim_cfg=cfg,
                           workers=workers, observe=True)
    rows = save_results(recs, out)
    print_summary(rows, f"oracle (label) policy in the tactile simulator, {episodes} episodes per condition")
    console.print(f"outputs in {out}/ ({time.time() - t0:.0f} s)")


@app.command()
def reproduce(
    preset: ReproducePresetName = typer.Option("tiny", help="smoke (minutes), tiny (CPU, ~50 min) or paper (GPU)"),
    out: Path = typer.Option(Path("outputs/reproduce"), help="output folder (rerun to resume)"),
    data: Path = typer.Option(None, help="reuse an existing dataset instead of building one"),
    model_path: Path = typer.Option(None, help="local Qwen2-VL checkpoint for the TLA models (paper preset)"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(2),
    mp_init: str = typer.Option(None, help="multi-peg runs start from scratch (the paper) or fine-tune the same "
                                "policy's single-peg run (sp); default: the preset's (tiny: sp)"),
):
    """The paper's experiments: data, BC/DP/SP-TLA/MP-TLA training, Tables I-IV, Fig. 4, report.md."""
    import dataclasses

    from tla.experiments.reproduce import PRESETS, ReproduceError
    from tla.experiments.reproduce import reproduce as run

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if data is not None and not (data / "meta" / "info.json").exists():
        raise typer.BadParameter(f"{data} is not a dataset (no meta/info.json); build one with `tla data build` "
                                 "or leave --data out to build it inside --out", param_hint="--data")
    if mp_init not in (None, "scratch", "sp"):
        raise typer.BadParameter(f"{mp_init!r}: use scratch or sp", param_hint="--mp-init")
    p = dataclasses.replace(PRESETS[preset], seed=seed, workers=workers, mp_init=mp_init or PRESETS[preset].mp_init)
    if model_path is not None:
        p.tla_overrides = [*p.tla_overrides, f"model.path={model_path}"]
    try:
        run(p, out, data)
    except ReproduceError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    print(f"report: {out / 'report.md'}")


@app.command()
def ablate(
    out: Path = typer.Option(Path("outputs/ablation-tiny"), help="output folder (rerun to resume)"),
    data: Path = typer.Option(None, help="reuse an existing tiny dataset (e.g. make demo's) instead of building one"),
    seeds: str = typer.Option("0,1,2", help="comma-separated seeds (model initialisation and data order)"),
    variants: str = typer.Option("", help="comma-separated row names of tla.experiments.ablation.VARIANTS, or "
                                 "`answers` (the tiny preset's plain answer vs contact reasoning and constrained "
                                 "decoding), or `pretrained` (from scratch vs a `tla pretrain` base given by "
                                 "--base), or `dpo` (the tiny preset before and after preference tuning), or "
                                 "`targets` (the plain answer vs the signed answer and the auxiliary action loss), "
                                 "or `layouts` (the composite vs the pairs layout); "
                                 "groups and row names mix (pretrained,dpo). "
                                 "Default: the paper input, each tiny-preset departure alone and "
                                 "together, BC on both inputs"),
    episodes: int = typer.Option(50, help="closed-loop episodes per run"),
    tla_steps: int = typer.Option(None, help="SP-TLA optimizer steps (default: tla reproduce tiny's)"),
    bc_steps: int = typer.Option(None, help="BC optimizer steps (default: tla reproduce tiny's)"),
    workers: int = typer.Option(2),
    reuse: Path = typer.Option(None, help="a `tla reproduce --preset tiny` output on the same --data: its "
                               "seed-0 BC and SP-TLA runs are reused where their configs are identical"),
    report_only: bool = typer.Option(False, help="train nothing: report the finished runs of the selection"),
    base: Path = typer.Option(None, help="the model folder of `tla pretrain --out OUT` (OUT/model), for the "
                              "pretrained-base rows (`--variants pretrained`)"),
    ood: str = typer.Option("", help="comma-separated unseen peg shapes (e.g. round,hexagon): every run is also "
                            "scored offline on mp_test_ood and in closed loop on these shapes at 2.0 mm"),
):
    """SP-TLA input ablation (paper input vs each departure of the tiny preset) over seeds, BC beside it:
    offline metrics on sp_test and one closed-loop condition, with the spread over seeds."""
    from tla.experiments.ablation import (
        ANSWER_VARIANTS,
        DEFAULT_VARIANTS,
        DPO_VARIANTS,
        LAYOUT_VARIANTS,
        PRETRAIN_VARIANTS,
        TARGET_VARIANTS,
        AblationConfig,
    )
    from tla.experiments.ablation import ablate as run

    groups = {"answers": ANSWER_VARIANTS, "pretrained": PRETRAIN_VARIANTS, "dpo": DPO_VARIANTS,
              "targets": TARGET_VARIANTS, "layouts": LAYOUT_VARIANTS}
    named = [v.strip() for v in variants.split(",") if v.strip()]
    # row names and group names mix (`pretrained,dpo`); a row named twice appears once, in first order
    chosen = tuple(dict.fromkeys(r for v in named for r in groups.get(v, (v,)))) or DEFAULT_VARIANTS
    if base is not None:
        from tla.pretrain.model import check_base

        check_base(base)
    steps = {k: v for k, v in (("tla_steps", tla_steps), ("bc_steps", bc_steps)) if v is not None}
    cfg = AblationConfig(seeds=tuple(int(s) for s in seeds.split(",") if s.strip()), variants=chosen,
                         episodes=episodes, workers=workers, base=str(base.resolve()) if base else None,
                         ood_shapes=tuple(x.strip() for x in ood.split(",") if x.strip()), **steps)
    run(cfg, out, data, reuse, report_only)
    print(f"report: {out / 'report.md'}")


def user_error(exc: BaseException) -> str | None:
    """The one-line message of an error the user can fix (bad value, missing or corrupt file, wrong
    spec), or None for a bug (which keeps its traceback)."""
    from tla.data.store import DatasetError

    if isinstance(exc, (ValueError, DatasetError, FileNotFoundError, NotADirectoryError, PermissionError)):
        return str(exc) or type(exc).__name__
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]  # e.g. an unknown policy name, with the registered ones
    return None


def main() -> None:
    """`tla`: user errors end in one `error:` line (exit 2); TLA_DEBUG=1 shows the traceback."""
    import os
    import sys

    try:
        code = app(standalone_mode=False)  # click's usage errors reach us too, to be printed on one line
    except Exception as exc:  # typer re-raises what the command raised
        if _is_click(exc, "NoArgsIsHelpError"):  # `tla`, `tla data`: the help, as asked
            print(exc.ctx.get_help())
            sys.exit(0)
        if _is_click(exc, "UsageError"):  # unknown option, bad choice, missing value, bad number
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
            print(f"error: {exc.format_message()}{where}", file=sys.stderr)
            sys.exit(2)
        if _is_click(exc, "Abort"):  # Ctrl-C at a prompt
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        message = user_error(exc)
        if message is None or os.environ.get("TLA_DEBUG"):
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _is_click(exc: BaseException, name: str) -> bool:
    """Whether `exc` is click's exception `name` (typer ships its own copy of click: match by class name)."""
    return any(c.__name__ == name for c in type(exc).__mro__)


if __name__ == "__main__":
    main()
