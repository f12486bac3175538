"""`tla pretrain`: the tactile-language base model (a thin shell over tla.pretrain.run)."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain_cmd(
    out: Path = typer.Option(Path("outputs/pretrain-tiny"), help="output folder (rerun to resume)"),
    preset: str = typer.Option("tiny", help="tiny (2 CPU cores, ~20 min) or smoke (seconds, for tests)"),
    overrides: list[str] = typer.Option(None, "--set", help="config override, e.g. --set train.max_steps=500 "
                                        "(sections: corpus., train., tla.)"),
    overwrite: bool = typer.Option(False, help="replace a run in --out made with another configuration"),
):
    """Pretrain the tiny Qwen2-VL on simulator-made questions about the touch (rim side, harder pad, twist,
    error, would a move insert) of peg shapes and clearances no evaluation uses; export OUT/model, a
    Hugging Face checkpoint that `model.path` loads, and check it on held-out attempts in a fresh process."""
    from rich.console import Console
    from rich.table import Table

    from tla.pretrain.run import pretrain, pretrain_config

    cfg = pretrain_config(preset, list(overrides or []))
    check = pretrain(cfg, out, overwrite=overwrite)
    table = Table(title=f"held-out contact questions ({check['samples']} samples, {out / 'model'} "
                        "loaded by plain transformers in a fresh process)")
    for col in ("kind", "accuracy %", "chance %", "n"):
        table.add_column(col)
    for kind, v in check["kinds"].items():
        table.add_row(kind, f"{100 * v['accuracy']:.1f}", f"{100 * v['chance']:.1f}", str(v["n"]))
    table.add_row("mean", f"{100 * check['accuracy']:.1f}", f"{100 * check['chance']:.1f}", "")
    console = Console()
    console.print(table)
    if check["collapsed_kinds"]:
        console.print(f"[bold red]COLLAPSED[/bold red] on {', '.join(check['collapsed_kinds'])}: one answer per "
                      "wording of the question for at least 90% of its samples while the right answers vary; the "
                      "model does not read the touch there" + (
                          " (every kind only the touch answers: it reads nothing)" if check["collapsed"] else ""))
    print(f"checkpoint: {out / 'model'} (model card: {out / 'model' / 'README.md'})")
