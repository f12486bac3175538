"""`tla data ...`: build, merge, view, stats, export (also runnable as `python -m tla.data.cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tla.config import DataPresetName, ExportFormat, ExportStyle, ViewModality
from tla.data.store import DatasetError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tactile-action dataset: build, view, export.")
console = Console()


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)  # plain text: paths in the message stay unwrapped
    raise typer.Exit(2)  # as every `tla` user error (tla.cli.main)


@app.command()
def build(
    out: Path = typer.Option(..., "--out", help="dataset directory (created; rerun the same command to resume)"),
    preset: DataPresetName = typer.Option("tiny", help="paper (GPU scale), tiny (CPU) or smoke (seconds)"),
    workers: int = typer.Option(2, help="worker processes (content does not depend on it)"),
    seed: int | None = typer.Option(None, help="dataset seed (default: the preset's, 0)"),
    shard_index: int = typer.Option(0, help="this job's slice (cluster job arrays); join with `tla data merge`"),
    num_shards: int = typer.Option(1, help="number of slices"),
    max_shards: int | None = typer.Option(None, help="stop after this many new shards (rerun to continue)"),
    set_: list[str] = typer.Option([], "--set", help="data config override, e.g. shard_size=64 image_format=png"),
    sim: list[str] = typer.Option([], "--sim", help="simulator override, e.g. render.height=120"),
) -> None:
    """Run the random insertion policy in the simulator; every failed attempt becomes one sample."""
    import time

    from tla.config import ConfigError, apply_overrides
    from tla.data.build import build as run_build
    from tla.data.build import with_seed
    from tla.data.config import preset as get_preset
    from tla.data.config import with_sim_overrides

    try:
        cfg = with_sim_overrides(apply_overrides(with_seed(get_preset(preset), seed), set_), sim)
        t0 = time.perf_counter()
        info = run_build(cfg, out, workers, shard_index, num_shards, max_shards)
    except (DatasetError, ConfigError) as e:
        _fail(e)
    dt = time.perf_counter() - t0
    if info is None:
        console.print(f"[yellow]partial build in {out} ({dt:.0f} s)[/yellow]: rerun the same command to continue, "
                      f"or `tla data merge` once every slice is built")
    else:
        console.print(f"[green]dataset complete[/green]: {out}, {info['total_samples']} samples, "
                      f"content hash {info['content_hash'][:16]} ({dt:.0f} s)")


@app.command()
def merge(out: Path, inputs: list[Path] = typer.Argument(None, help="slice directories (none: finalize OUT)")) -> None:
    """Join slice builds (--shard-index/--num-shards) into OUT and write its meta."""
    from tla.data.build import merge as run_merge

    try:
        info = run_merge(out, inputs or [])
    except DatasetError as e:
        _fail(e)
    console.print(f"[green]merged[/green] {out}: {info['total_samples']} samples, hash {info['content_hash'][:16]}")


@app.command()
def verify(root: Path) -> None:
    """Hash every shard and compare with meta/info.json (no cache); a corrupt one is named with the fix."""
    from tla.data import store

    try:
        info = store.load_info(root)
        files = store.verify_files(root, info, use_cache=False)
    except DatasetError as e:
        _fail(e)
    console.print(f"[green]ok[/green] {root}: {len(files)} shards match meta/info.json "
                  f"(content hash {info['content_hash'][:16]})")


@app.command()
def view(
    root: Path,
    split: str = typer.Option("sp_train"),
    index: int = typer.Option(0),
    out: Path = typer.Option(Path("sheet.png")),
    composite_size: int = typer.Option(616),
    modality: ViewModality = typer.Option("rgb", help="rgb, marker_flow or depth (as a policy sees it); all: one row each"),
) -> None:
    """Contact sheet of one sample: frames, composite, pose error, label, instruction/answer."""
    from tla.data.view import modality_sheet, sample_sheet

    try:
        if modality == "all":
            console.print(f"wrote {modality_sheet(root, split, index, out)}")
        else:
            console.print(f"wrote {sample_sheet(root, split, index, out, composite_size, modality)}")
    except (DatasetError, IndexError, ValueError) as e:
        _fail(e)


@app.command()
def stats(root: Path, hist: Path | None = typer.Option(None, help="label histogram PNG (default DIR/meta/labels.png)")) -> None:
    """Counts per split and shape, action/error ranges, label histograms."""
    from tla.data.view import label_histograms, split_stats

    try:
        s = split_stats(root)
        png = label_histograms(root, hist or Path(root) / "meta" / "labels.png")
    except DatasetError as e:
        _fail(e)
    t = Table("split", "samples", "episodes", "shapes", "action mean (dx, dy, drz)", "action std")
    for split, v in s.items():
        a = v["stats"]["action"]
        fmt = lambda xs: "(" + ", ".join(f"{x:+.3f}" for x in xs) + ")"
        t.add_row(split, str(v["samples"]), str(v["episodes"]), json.dumps(v["shapes"]), fmt(a["mean"]), fmt(a["std"]))
    console.print(t)
    console.print(f"label histograms: {png}")


EXPORT_FORMATS = ("messages", "trl", "llamafactory", "lerobot")


@app.command()
def export(
    root: Path,
    out: Path = typer.Option(..., "--out"),
    format: ExportFormat = typer.Option(
        "messages",
        help="messages: chat JSONL + PNGs; trl: prompt-completion parquet with embedded images; llamafactory: "
        "sharegpt JSONL + dataset_info.json + training YAML; lerobot: one LeRobot v3.0 root per split",
    ),
    split: list[str] = typer.Option([], help="splits to export (default: all)"),
    style: ExportStyle = typer.Option("llamafactory", help="messages only: llamafactory ('<image>' token) or trl "
                                                   "(content lists)"),
    composite_size: int = typer.Option(616, help="chat formats: side of the tiled composite image"),
    limit: int | None = typer.Option(None, help="at most this many samples (lerobot: frames) per split"),
) -> None:
    """Export splits for other tools: chat JSONL, TRL, LLaMA-Factory or LeRobot v3.0."""
    from tla.data import chat, lerobot
    from tla.data.export import export_messages

    if format not in EXPORT_FORMATS:
        _fail(ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}"))
    splits = split or None
    try:
        if format == "messages":
            written = export_messages(root, out, splits, composite_size, style, limit)
        elif format == "trl":
            written = chat.export_trl(root, out, splits, composite_size, limit)
        elif format == "llamafactory":
            written = chat.export_llamafactory(root, out, splits, composite_size, limit)
        else:
            written = lerobot.export_lerobot(root, out, splits, limit)
    except (DatasetError, ValueError) as e:
        _fail(e)
    for s, p in written.items():
        console.print(f"{s}: {p}")


if __name__ == "__main__":
    app()
