"""`tla sim ...`: preview an attempt, benchmark the simulator, run oracle episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from tla.config import apply_overrides
from tla.sim.config import SimConfig
from tla.sim.geometry import SHAPES, UnknownShapeError, check_shape

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _sim_config(overrides: list[str] | None) -> SimConfig:
    return apply_overrides(SimConfig(), overrides or [])


def _shape(value: str) -> str:
    try:
        return check_shape(value)
    except UnknownShapeError as e:
        raise typer.BadParameter(str(e)) from None


@app.command()
def preview(
    shape: str = typer.Option("square", callback=_shape, help=f"one of {', '.join(SHAPES)}"),
    clearance: float = typer.Option(2.0, help="total assembly clearance c (mm)"),
    ex: float = typer.Option(1.8, help="pose error x (mm)"),
    ey: float = typer.Option(0.4, help="pose error y (mm)"),
    erz: float = typer.Option(3.0, help="pose error rz (deg)"),
    seed: int = typer.Option(0, help="seed of the attempt's randomisation"),
    out: Path = typer.Option(Path("sheet.png"), help="output PNG"),
    set_: list[str] = typer.Option([], "--set", help="config override, e.g. --set render.height=120"),
):
    """One PNG: the 8 frames, the 3x3 composite and a top view of footprint, hole and contact."""
    from tla.sim.preview import preview_sheet
    from tla.sim.simulator import simulate_attempt

    cfg = _sim_config(set_)
    res = simulate_attempt(cfg, shape, clearance, [ex, ey, erz], np.random.default_rng(seed))
    path = preview_sheet(cfg, res, out)
    state = "inserted (no contact)" if res.inserted else f"collided; label {np.round(res.label, 3).tolist()}"
    console.print(f"{shape} c={clearance} e=({ex}, {ey}, {erz}): {state} -> {path}")


@app.command()
def bench(
    json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    n: int = typer.Option(100, help="attempts per repetition"),
    repeats: int = typer.Option(5, help="repetitions (the median is reported)"),
):
    """Throughput in full 8-frame sequences per second, one process, at the default resolution."""
    from tla.sim.bench import sequences_per_second

    result = sequences_per_second(n=n, repeats=repeats)
    if json_out:
        print(json.dumps(result))
    else:
        console.print(f"{result['sequences_per_second_per_core']:.1f} sequences/s per core "
                      f"(median of {repeats}; physics only {result['physics_only_per_second']:.0f}/s)")


@app.command()
def probe(
    n: int = typer.Option(2000, help="failed attempts to simulate (half train, half test)"),
    clearance: float = typer.Option(2.0),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
):
    """Information content: linear-probe accuracy of sign(ex), sign(ey), sign(erz) from the tactile signal."""
    from tla.sim.probe import sign_probe_accuracies

    acc = sign_probe_accuracies(n=n, clearance=clearance, seed=seed)
    if json_out:
        print(json.dumps(acc))
    else:
        for k in ("ex", "ey", "erz"):
            console.print(f"sign({k}): {100 * acc[f'sign_{k}_accuracy']:.1f}% on {acc[f'sign_{k}_test_samples']} test samples")


def print_summary(rows: list[dict], title: str) -> None:
    table = Table(title=title)
    for col in ("shape", "clearance (mm)", "episodes", "success", "95% CI", "mean steps"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["shape"], f"{r['clearance']:.1f}", str(r["episodes"]), f"{100 * r['success']:.1f}%",
                      f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]", f"{r['mean_steps']:.2f}")
    console.print(table)
