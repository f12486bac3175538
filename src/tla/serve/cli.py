"""`tla serve` (the policy server) and `tla sim remote` (closed-loop episodes through a server)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tla.sim.geometry import SHAPES


def serve_cmd(
    run: Path = typer.Option(..., help="run dir, checkpoint dir or policy dir (any trained policy)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback unless --allow-remote)"),
    port: int = typer.Option(8000),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="allow a non-loopback --host (needs an API key)"),
    api_key: str | None = typer.Option(None, help="require this X-API-Key on every request (or env TLA_API_KEY)"),
    max_batch: int = typer.Option(8, help="requests batched into one policy call"),
    max_wait_ms: float = typer.Option(5.0, help="how long to wait to fill a batch"),
    max_body_mb: float = typer.Option(16.0, help="request body limit (MiB); larger bodies get 413"),
    frame_size: str | None = typer.Option(None, help="HxW that composite cells are resized to (default: the run's)"),
) -> None:
    """Serve a trained policy over HTTP: POST /act, GET /health, GET /info, /docs."""
    import uvicorn

    from tla.serve.app import ServeSettings, app_from_run, check_bind

    api_key = api_key or os.environ.get("TLA_API_KEY") or None
    try:
        check_bind(host, allow_remote, api_key)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--host") from None
    size = tuple(int(v) for v in frame_size.lower().split("x")) if frame_size else None
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=int(max_body_mb * 2**20),
                             api_key=api_key, frame_size=size)  # type: ignore[arg-type]
    app = app_from_run(run, settings)
    typer.echo(f"serving {run} on http://{host}:{port} (docs: /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")


def remote_cmd(
    url: str = typer.Option("http://127.0.0.1:8000", help="policy server URL"),
    n: int = typer.Option(10, "--episodes", help="episodes per condition"),
    shapes: str = typer.Option("square", help=f"comma-separated peg shapes ({', '.join(SHAPES)})"),
    clearances: str = typer.Option("2.0", help="comma-separated clearances (mm)"),
    seed: int = typer.Option(0, help="base seed: the same episode seeds as the in-process evaluator"),
    api_key: str | None = typer.Option(None, help="X-API-Key (or env TLA_API_KEY)"),
    set_: list[str] = typer.Option([], "--set", help="simulator override, e.g. --set render.height=120"),
    out: Path | None = typer.Option(None, help="folder for records.jsonl and summary.json"),
) -> None:
    """The simulator plays the robot: closed-loop episodes whose actions come from a policy server."""
    from tla.client import PolicyClient, run_remote
    from tla.eval.closed_loop import save_results, summarize
    from tla.sim.cli import _shape, _sim_config, print_summary

    shape_list = [_shape(s.strip()) for s in shapes.split(",") if s.strip()]
    clearance_list = [float(c) for c in clearances.split(",") if c.strip()]
    with PolicyClient(url, api_key or os.environ.get("TLA_API_KEY")) as client:
        name = client.info()["policy"]
        recs = run_remote(client, shape_list, clearance_list, n, base_seed=seed, sim_cfg=_sim_config(set_))
    rows = save_results(recs, out) if out else summarize(recs)
    print_summary(rows, f"{name} policy via {url}, {n} episodes per condition")
