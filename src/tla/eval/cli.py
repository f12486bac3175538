"""`tla eval offline` and `tla eval closed-loop`: the same code for every policy."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import track

from tla.runinfo import write_run_metadata

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _csv(value: str, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


def run_sim_config(run: Path, data: Path | None, policy=None):
    """The simulator config for closed-loop trials of `run`: the explicit --data's (the sensor must match the
    observation spec the policy was trained on), else the one the run recorded beside its weights
    (policy/observation.json), else, for runs of older versions, its training dataset's; the default config
    with a warning when none is known."""
    from tla.config import from_dict
    from tla.data import store
    from tla.policies.registry import load_policy
    from tla.sim.config import SimConfig
    from tla.sim.observation import ObservationSpec, check_same_spec

    policy = policy if policy is not None else load_policy(run)
    if data is not None:
        cfg = from_dict(SimConfig, store.load_info(data, check_files=False)["sim_config"])
        spec = ObservationSpec.of_sim(cfg, policy.observation_spec.modality) if policy.observation_spec else None
        check_same_spec(policy.observation_spec, spec, f"the simulator of {data}")
        return cfg
    if policy.sim_config is not None:
        return from_dict(SimConfig, policy.sim_config)
    cfg_path = run / "config.json"
    recorded = json.loads(cfg_path.read_text()).get("data") if cfg_path.exists() else None
    if recorded and Path(recorded).exists():
        return from_dict(SimConfig, store.load_info(Path(recorded), check_files=False)["sim_config"])
    console.print(f"[yellow]warning:[/yellow] {run} records no simulator config and names no dataset; using "
                  f"the default sensor ({SimConfig().render.height}x{SimConfig().render.width}); pass --data")
    return SimConfig()


@app.command()
def offline(
    run: Path = typer.Option(..., help="trained run directory (any policy)"),
    data: Path = typer.Option(..., help="dataset directory (tla data build)"),
    split: str = typer.Option("sp_test", help="test split"),
    out: Path = typer.Option(..., help="output folder: metrics.json, predictions.jsonl, fig4.png"),
    limit: int = typer.Option(0, help="first N samples only (0 = all)"),
    batch_size: int = typer.Option(16),
    eta: float = typer.Option(0.1, help="GCR tolerance beyond c/2 (mm)"),
    eta_rz: float = typer.Option(0.5, help="GCR rotation tolerance (deg)"),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
):
    """Tables I/II: GCR, L1 per axis (GCR samples and all), direction accuracy, one-step insertion,
    parse failures; Fig. 4 arrow plots."""
    from tla.data.dataset import TactileDataset
    from tla.eval.figures import arrow_plot
    from tla.eval.offline import GoalTolerance, offline_metrics
    from tla.policies.base import policy_modality
    from tla.policies.registry import load_policy
    from tla.sim.observation import check_same_spec

    policy = load_policy(run)
    ds = TactileDataset(data, split, modality=policy_modality(policy))
    check_same_spec(policy.observation_spec, ds.observation_spec, f"{data} ({split})")
    n = min(limit, len(ds)) if limit else len(ds)
    actions, texts, ok, labels, errors, clearances, shapes = [], [], [], [], [], [], []
    for start in track(range(0, n, batch_size), description=f"predict {split}", console=console, disable=json_out):
        items = [ds[i] for i in range(start, min(start + batch_size, n))]
        pred = policy.predict(np.stack([it["frames"] for it in items]), [it["shape"] for it in items])
        actions.append(pred.actions)
        texts += pred.texts or [None] * len(items)
        ok.append(np.ones(len(items), bool) if pred.parse_ok is None else pred.parse_ok)
        for it in items:
            labels.append(it["action"])
            errors.append(it["error"])
            clearances.append(it["clearance"])
            shapes.append(it["shape"])
    actions, ok = np.concatenate(actions), np.concatenate(ok)
    tol = GoalTolerance(eta, eta_rz)
    metrics = offline_metrics(actions, labels, errors, clearances, shapes, ok, tol)
    metrics.update(policy=getattr(policy, "name", "?"), run=str(run), data=str(data), split=split)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(out / "predictions.jsonl", "w") as f:
        for a, t, o, lab, e, s in zip(actions, texts, ok, labels, errors, shapes):
            f.write(json.dumps({"action": np.round(a, 4).tolist(), "text": t, "parse_ok": bool(o),
                                "label": np.round(lab, 4).tolist(), "error": np.round(e, 4).tolist(), "shape": s}) + "\n")
    arrow_plot(errors, actions, labels, out / "fig4.png", title=f"{metrics['policy']} on {split}", tol=tol)
    write_run_metadata(out, {"run": str(run), "data": str(data), "split": split, "limit": limit,
                             "eta": eta, "eta_rz": eta_rz}, None)
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
    episodes: int = typer.Option(50, help="episodes per condition"),
    out: Path = typer.Option(..., help="output folder: records.jsonl, summary.json, trajectories.png"),
    seed: int = typer.Option(0, help="base seed of the fixed episode list (same for every policy)"),
    workers: int = typer.Option(2),
    data: Path = typer.Option(None, help="dataset whose simulator config to use (default: the run's)"),
    json_out: bool = typer.Option(False, "--json"),
):
    """Tables III/IV: success within the attempt budget (Wilson 95% CI) and mean steps."""
    from tla.eval.closed_loop import run_closed_loop, save_results
    from tla.eval.figures import trajectory_plot
    from tla.policies.registry import load_policy
    from tla.sim.cli import print_summary

    sim_cfg = run_sim_config(run, data)
    factory = functools.partial(load_policy, str(run))
    recs = run_closed_loop(factory, _csv(shapes), _csv(clearances, float), episodes, base_seed=seed,
                           sim_cfg=sim_cfg, workers=workers, progress=not json_out)
    rows = save_results(recs, out)
    trajectory_plot(recs, out / "trajectories.png")
    write_run_metadata(out, sim_cfg, seed)
    if json_out:
        print(json.dumps(rows))
    else:
        print_summary(rows, f"{run} closed loop, {episodes} episodes per condition")
