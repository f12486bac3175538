"""`tla eval offline` and `tla eval closed-loop`: the same code for every policy."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from tla.config import Decode
from tla.eval.offline import GoalTolerance
from tla.sim.geometry import SHAPES

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _csv(value: str, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


@app.command()
def offline(
    run: Path = typer.Option(..., help="trained run directory (any policy)"),
    data: Path = typer.Option(..., help="dataset directory (tla data build)"),
    split: str = typer.Option("sp_test", help="test split, or `validation`: the episodes the run held out "
                              "of its training split (choose settings there, never on a test split)"),
    out: Path = typer.Option(..., help="output folder: metrics.json, predictions.jsonl, fig4.png"),
    limit: int = typer.Option(0, help="first N samples only (0 = all)"),
    batch_size: int = typer.Option(16),
    eta: float = typer.Option(GoalTolerance.eta, help="GCR tolerance beyond c/2 (mm)"),
    eta_rz: float = typer.Option(GoalTolerance.eta_rz, help="GCR rotation tolerance (deg)"),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
    threads: int = typer.Option(1, min=1, help="torch threads for the predictions (fixed: the metrics depend "
                                "on it in the last bits; recorded in metrics.json)"),
    decode: Decode = typer.Option(None, help="TLA runs: which action the beams give, top (the best beam) or "
                                  "mean (their probability-weighted mean); default: the run's generate.decode"),
    constrained: bool = typer.Option(None, "--constrained/--unconstrained", help="TLA runs: beam search "
                                     "restricted to the answer grammar (no parse failure possible) or free; "
                                     "default: the run's generate.constrained"),
):
    """Tables I/II: GCR, L1 per axis (GCR samples and all), direction accuracy (also by label size: zero /
    small / large), one-step insertion, parse failures; Fig. 4 arrow plots."""
    from tla.eval.offline import GoalTolerance, evaluate_offline

    metrics = evaluate_offline(run, data, split, out, limit, batch_size, GoalTolerance(eta, eta_rz),
                               progress=not json_out, threads=threads, decode=decode, constrained=constrained)
    if metrics["collapse"]["collapsed"]:
        from tla.policies.collapse import CollapseCheck

        msg = CollapseCheck(**{**metrics["collapse"], "modal_answer": tuple(metrics["collapse"]["modal_answer"])})
        console.print(f"[bold red]{msg.message(f'{run} on {split}')}[/bold red]", highlight=False)
    if json_out:
        print(json.dumps(metrics))
    else:
        console.print_json(json.dumps(metrics))


@app.command("closed-loop")
def closed_loop(
    run: Path = typer.Option(..., help="trained run directory (any policy)"),
    clearances: str = typer.Option("2.0,1.6,1.0", help="comma-separated clearances (mm)"),
    shapes: str = typer.Option("square", help="comma-separated peg shapes"),
    episodes: int = typer.Option(50, min=1, help="episodes per condition"),
    out: Path = typer.Option(..., help="output folder: records.jsonl, summary.json, trajectories.png"),
    seed: int = typer.Option(0, help="base seed of the fixed episode list (same for every policy)"),
    workers: int = typer.Option(2),
    data: Path = typer.Option(None, help="dataset whose simulator config to use (default: the run's)"),
    json_out: bool = typer.Option(False, "--json"),
    decode: Decode = typer.Option(None, help="TLA runs: act on the top beam or the mean of the beams "
                                  "(default: the run's generate.decode)"),
    constrained: bool = typer.Option(None, "--constrained/--unconstrained", help="TLA runs: beam search "
                                     "restricted to the answer grammar or free (default: the run's)"),
    max_attempts: int = typer.Option(None, min=1, help="attempts per episode (default: the simulator "
                                     "config's, the paper's 15)"),
):
    """Tables III/IV: success within the attempt budget (Wilson 95% CI) and mean steps."""
    from tla.eval.closed_loop import evaluate_closed_loop
    from tla.sim.cli import print_summary

    rows = evaluate_closed_loop(run, _csv(clearances, float), _csv(shapes), episodes, out, seed, workers, data,
                                progress=not json_out, decode=decode, constrained=constrained,
                                max_attempts=max_attempts)
    if json_out:
        print(json.dumps(rows))
    else:
        print_summary(rows, f"{run} closed loop, {episodes} episodes per condition")


def oracle_episodes(
    shapes: str = typer.Option(",".join(SHAPES), help="comma-separated peg shapes"),
    clearances: str = typer.Option("2.0,1.6,1.0", help="comma-separated clearances (mm)"),
    n: int = typer.Option(50, "--episodes", min=1, help="episodes per condition"),
    seed: int = typer.Option(0),
    workers: int = typer.Option(2),
    observe: bool = typer.Option(True, help="render tactile frames (off: geometry only, much faster)"),
    fallback: bool = typer.Option(True, help="when the paper's label is zero on every axis but the attempt "
                                  "failed, move toward zero error (off: the paper's labels alone, the ceiling of "
                                  "a policy that imitates them exactly)"),
    out: Path = typer.Option(None, help="folder for records.jsonl and summary.json"),
):
    """Closed-loop episodes of the oracle (label) policy; prints success, Wilson CI and mean steps.
    (Registered as `tla sim episodes` by tla.cli: it needs the evaluator, which sits above the simulator.)"""
    import functools
    from dataclasses import asdict

    from tla.eval.closed_loop import run_closed_loop, save_results, summarize
    from tla.policies.oracle import OraclePolicy
    from tla.runinfo import write_run_metadata
    from tla.sim.cli import _shape, print_summary
    from tla.sim.config import SimConfig

    shape_list = [_shape(s.strip()) for s in shapes.split(",") if s.strip()]
    clearance_list = [float(c) for c in clearances.split(",") if c.strip()]
    policy = functools.partial(OraclePolicy, fallback=fallback)  # a picklable factory for the workers
    recs = run_closed_loop(policy, shape_list, clearance_list, n, base_seed=seed, workers=workers, observe=observe)
    rows = save_results(recs, out) if out else summarize(recs)
    print_summary(rows, f"oracle policy{'' if fallback else ' without fallback (paper labels only)'}, "
                        f"{n} episodes per condition")
    if out:  # the policy is part of the result: a labels-only run is not the oracle's
        write_run_metadata(out, {"policy": "oracle" if fallback else "paper labels only (no fallback)",
                                 "sim": asdict(SimConfig())}, seed)
