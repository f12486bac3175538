"""`tla train` and `tla predict`: typer commands (registered in `tla.cli`; also `python -m tla.train.cli`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from tla.config import PolicyName, TrainPresetName

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train and query policies.")


def _dataset(data: Path, split: str, policy):
    """The split, read in the modality the policy consumes."""
    from tla.data.dataset import TactileDataset  # lazy: the dataset module is heavy and optional here
    from tla.policies.base import policy_modality

    return TactileDataset(data, split, modality=policy_modality(policy))


def _split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """`train.lr=1e-4` goes to the trainer config; everything else (`model.lora_rank=16`) to the policy's."""
    train = [o[len("train.") :] for o in overrides if o.startswith("train.")]
    return train, [o for o in overrides if not o.startswith("train.")]


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., help="dataset root (tla data build output)"),
    out: Path = typer.Option(..., help="run directory"),
    policy: PolicyName | None = typer.Option(None, help="registered policy (default tla; a resumed run: its own)"),
    split: str = typer.Option(None, help="training split (default sp_train); validation is carved from it by episode"),
    preset: TrainPresetName | None = typer.Option(None, help="tiny (CPU, default) or paper"),
    max_steps: int | None = typer.Option(None, help="optimizer steps (overrides epochs)"),
    resume: bool = typer.Option(False, help="continue the run in OUT from its last checkpoint, as recorded"),
    overwrite: bool = typer.Option(False, help="replace the run already in OUT"),
    init_from: Path | None = typer.Option(None, help="start from the weights of this trained run (fine-tuning "
                                          "it on --data/--split; its policy config is kept as recorded)"),
    overrides: list[str] = typer.Argument(None, help="dotted overrides: model.lora_rank=16 train.lr=1e-4"),
) -> None:
    """Train a policy; the run dir gets config.json, train_log.jsonl, checkpoints/ and policy/."""
    summary = train_run(data, out, policy, split, preset, max_steps, resume, overwrite, list(overrides or []),
                        init_from)
    typer.echo(json.dumps(summary, indent=2))


def train_run(data: Path, out: Path, policy: str | None = None, split: str | None = None, preset: str | None = None,
              max_steps: int | None = None, resume: bool = False, overwrite: bool = False,
              overrides: list[str] | None = None, init_from: Path | None = None) -> dict:
    """`tla train` as a function: resolve the configs, record them, train; returns the trainer's summary.
    None for policy / split / preset means the recorded value when resuming, else tla / sp_train / tiny
    (with `init_from`: its policy). `init_from`: a trained run whose weights the policy starts from."""
    from tla.policies.registry import policy_config, policy_name
    from tla.train.trainer import train

    data, out, overrides = Path(data), Path(out), list(overrides or [])
    prev = existing_run(out, resume, overwrite)
    if prev is not None:
        check_resume_request(prev, out, data, policy, preset, split, overrides, max_steps, init_from)
        init_from = (prev.get("init_from") or {}).get("run")
    source = initial_run(init_from) if init_from else None
    if source is not None:
        policy = policy or policy_name(init_from)
    cfg, pol, train_ov, policy_ov, (policy, preset, split) = resolve_run(
        policy or "tla", preset or "tiny", split or "sp_train", overrides, max_steps, prev, init_from)
    run_config = {
        "policy": policy,
        "preset": preset,
        "data": str(data.resolve()),
        "split": split,
        "seed": cfg.seed,
        "train_overrides": train_ov,
        "policy_overrides": policy_ov,
        "versions": _versions(),
        "policy_config": policy_config(pol),
        "model": pol.describe() if hasattr(pol, "describe") else None,
        "init_from": source,
    }
    dataset = _dataset(data, split, pol)
    check_action_scale(pol, dataset)
    return train(pol, dataset, cfg, out, run_config, resume=resume)


def check_action_scale(policy, dataset) -> None:
    """A text policy writes its answers with its own `scale`; the dataset's `answer` column (and every chat
    export made from it) uses the dataset's `action_scale`. Training on one while the other says otherwise
    would teach numbers no export or reader agrees with: refuse, naming both."""
    scale = getattr(getattr(policy, "cfg", None), "scale", None)
    data_scale = (getattr(dataset, "info", None) or {}).get("action_scale")
    if scale is None or data_scale is None:
        return
    if [float(v) for v in scale] != [float(v) for v in data_scale]:
        raise ValueError(f"the policy's action scale {list(scale)} differs from the dataset's {list(data_scale)} "
                         f"(its answer column and exports); train with scale={list(data_scale)} or rebuild the "
                         f"dataset with --set action_scale={list(scale)}")


def existing_run(out: Path, resume: bool, overwrite: bool) -> dict | None:
    """The config.json of the run in `out` when resuming it; a run folder is never silently reused: without
    --resume it is refused, or emptied with --overwrite."""
    import shutil

    saved = out / "config.json"
    holds_run = saved.exists() or (out / "checkpoints").exists() or (out / "train_log.jsonl").exists()
    if resume:
        if not saved.exists():
            raise ValueError(f"--resume: {out} holds no run (no config.json); drop --resume to start one")
        return json.loads(saved.read_text())
    if holds_run and not overwrite:
        what = json.loads(saved.read_text()).get("policy", "?") if saved.exists() else "unfinished"
        raise ValueError(f"{out} already holds a {what} run; pass --resume to continue it, --overwrite to "
                         "replace it, or choose another --out")
    if holds_run:
        shutil.rmtree(out)
    return None


def check_resume_request(prev: dict, out: Path, data: Path, policy, preset, split, overrides, max_steps,
                         init_from: Path | None = None) -> None:
    """A resumed run continues as recorded; a value given now that differs from the record is named."""
    train_ov, policy_ov = _split_overrides(overrides)
    asked = {"policy": policy, "preset": preset, "split": split, "data": str(data.resolve()),
             "train_overrides": train_ov or None, "policy_overrides": policy_ov or None}
    changed = [f"{k} {prev.get(k)!r} -> {v!r}" for k, v in asked.items() if v is not None and v != prev.get(k)]
    recorded_init = (prev.get("init_from") or {}).get("run")
    if init_from is not None and str(Path(init_from).resolve()) != recorded_init:
        changed.append(f"init_from {recorded_init!r} -> {str(Path(init_from).resolve())!r}")
    if max_steps is not None and max_steps != prev.get("train", {}).get("max_steps"):
        changed.append(f"max_steps {prev.get('train', {}).get('max_steps')!r} -> {max_steps!r}")
    if changed:
        raise ValueError(f"--resume continues the run in {out} as recorded, but this call changes "
                         f"{'; '.join(changed)}; drop those arguments, or start a new run (--overwrite or another --out)")


def resolve_run(policy: str, preset: str, split: str, overrides: list[str], max_steps: int | None,
                prev: dict | None = None, init_from: Path | None = None):
    """The trainer config and the fresh policy a `tla train` call would use (no training), so a caller can
    compare them with a finished run's config.json. A resumed run (`prev` = its config.json) keeps its
    recorded settings: the schedule depends on them. `init_from`: the policy is that trained run's, weights
    and config (its architecture, input and decoding are what the weights were trained for)."""
    from tla.config import from_dict
    from tla.policies.registry import build_policy, load_policy, policy_name
    from tla.train.config import TrainConfig

    train_ov, policy_ov = _split_overrides(overrides)
    if prev is not None:
        policy, preset, split = prev["policy"], prev["preset"], prev["split"]
        train_ov, policy_ov = prev["train_overrides"], prev["policy_overrides"]
        cfg = from_dict(TrainConfig, prev["train"])
    else:
        cfg = train_config(policy, preset, split, train_ov)
    if max_steps is not None:
        cfg.max_steps = max_steps
    if init_from is None:
        return cfg, build_policy(policy, preset, policy_ov), train_ov, policy_ov, (policy, preset, split)
    if policy_name(init_from) != policy:
        raise ValueError(f"--init-from {init_from} is a {policy_name(init_from)} run, not {policy}; drop --policy "
                         f"or pick a {policy} run")
    if policy_ov:
        raise ValueError(f"--init-from keeps the policy config {init_from} was trained with; drop the policy "
                         f"overrides {policy_ov} (train.* overrides are fine) or train from scratch")
    return cfg, load_policy(init_from), train_ov, policy_ov, (policy, preset, split)


def recorded_differences(done: dict, policy: str, split: str, steps: int, overrides: list[str],
                         init_from: Path | None = None) -> list[str]:
    """What differs between a finished run's config.json (`done`) and the run these arguments would train
    with the tiny preset: policy, split, steps, source run, resolved trainer and policy configs (the data is
    the caller's to compare: by path or by content)."""
    import dataclasses

    from tla.policies.registry import policy_config

    train_cfg, pol, *_ = resolve_run(policy, "tiny", split, overrides, steps, None, init_from)
    checks = {"policy": (done.get("policy"), policy), "split": (done.get("split"), split),
              "steps": (done.get("total_steps"), steps),
              "init_from": ((done.get("init_from") or {}).get("run"), str(Path(init_from).resolve()) if init_from else None),
              "trainer config": (done.get("train"), _plain(dataclasses.asdict(train_cfg))),
              "policy config": (done.get("policy_config"), _plain(policy_config(pol)))}
    return [k for k, (recorded, wanted) in checks.items() if recorded != wanted]


def _plain(x):
    """x as config.json stores it (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(x, default=str))


def initial_run(run: Path | str) -> dict:
    """What a run started from `run` records about it: path, policy, data, split, seed, steps."""
    run = Path(run).resolve()
    saved = run / "config.json"
    if not (run / "policy").is_dir() or not saved.exists():
        raise ValueError(f"--init-from {run}: not a finished training run (needs config.json and policy/); "
                         "pass a `tla train` output folder")
    rec = json.loads(saved.read_text())
    return {"run": str(run), "policy": rec.get("policy"), "data": rec.get("data"), "split": rec.get("split"),
            "seed": rec.get("seed"), "steps": rec.get("total_steps"), "policy_overrides": rec.get("policy_overrides"),
            "init_from": rec.get("init_from")}


def train_config(policy: str, preset: str, split: str, train_overrides: list[str] | None = None):
    """The trainer config of a fresh run: the preset, the split's epochs, the policy's own defaults, then
    the user's `train.*` overrides (given without the prefix)."""
    from tla.policies.registry import policy_class
    from tla.train.config import train_preset

    defaults = []
    if split.startswith("mp"):  # the paper: 20 epochs single-peg, 10 multi-peg (twice the samples)
        defaults.append("epochs=10" if preset == "paper" else "epochs=3")
    cls = policy_class(policy)
    if hasattr(cls, "train_overrides"):
        defaults += list(cls.train_overrides(preset, split))
    return train_preset(preset, defaults + list(train_overrides or []))


@app.command("predict")
def predict_cmd(
    run: Path = typer.Option(..., help="run dir, checkpoint dir or policy dir"),
    data: Path = typer.Option(..., help="dataset root"),
    split: str = typer.Option("sp_test"),
    limit: int = typer.Option(8, help="number of samples"),
    batch_size: int = typer.Option(8),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """Predict actions for the first LIMIT samples of a split, next to their labels."""
    from transformers.utils import logging as hf_logging

    from tla.policies.base import batch_for
    from tla.policies.registry import load_policy

    hf_logging.disable_progress_bar()  # keep stdout clean: one line per sample
    from tla.sim.observation import check_same_spec

    pol = load_policy(run)
    ds = _dataset(data, split, pol)
    check_same_spec(pol.observation_spec, getattr(ds, "observation_spec", None), f"{data} ({split})")
    n = min(limit, len(ds))
    for s in range(0, n, batch_size):
        items = [ds[i] for i in range(s, min(n, s + batch_size))]
        batch = batch_for(pol, np.stack([it["frames"] for it in items]), [it["shape"] for it in items])
        pred = pol.predict(batch)
        for j, it in enumerate(items):
            rec = {
                "index": s + j,
                "shape": it["shape"],
                "action": np.round(pred.actions[j], 4).tolist(),
                "label": np.round(np.asarray(it["action"], float), 4).tolist(),
                "text": pred.texts[j] if pred.texts else None,
                "parse_ok": bool(pred.parse_ok[j]) if pred.parse_ok is not None else True,
            }
            if as_json:
                typer.echo(json.dumps(rec))
            else:
                typer.echo(
                    f"{rec['index']:5d} {rec['shape']:9s} pred {rec['action']} label {rec['label']} "
                    f"text {rec['text']!r}"
                )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("tla", "torch", "transformers", "peft", "accelerate", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    app()
