"""Checkpoints for exact resume: `checkpoints/last` (always), periodic `checkpoints/step-N`, and
`checkpoints/best` (the step of the best `train.best_metric` so far; its `best.json` names metric, value,
step).

A checkpoint dir holds `policy/` (what `policy.save` writes: reloadable alone), `config.json` (the run
config, so `load_policy(ckpt)` works), `trainer_state.pt` (trainable weights + buffers, optimizer,
scheduler, step, policy extra state) and `rng-{rank}.pt` (python/numpy/torch RNG of every process).
The data order is a pure function of (seed, step), so the step alone restores the data position.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from tla.policies.registry import save_policy


def resume_state(model) -> dict[str, torch.Tensor]:
    """What changes during training: trainable parameters and every buffer (e.g. BatchNorm statistics).
    Frozen weights (a 7B backbone under LoRA) are not copied."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict(keep_vars=True).items() if k in keep}


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def write_rng(directory: Path, rank: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), directory / f"rng-{rank}.pt")


def write_main(directory: Path, policy, model, optimizer, scheduler, step: int, run_config: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_policy(policy, directory / "policy")
    (directory / "config.json").write_text(json.dumps(run_config, indent=2))
    state = {
        "step": step,
        "model": resume_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "extra": policy.extra_state(),
    }
    torch.save(state, directory / "trainer_state.pt")


def publish(tmp: Path, ckpt_root: Path, step: int, periodic: bool, keep: int, name: str = "last") -> None:
    """Replace `name` (last or best) with `tmp`; copy it to step-N when periodic; prune old step-N dirs.
    Two renames: a kill between them leaves only `name.old`, which `recover` puts back."""
    last = ckpt_root / name
    old = ckpt_root / f"{name}.old"
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)  # a leftover of a kill after the second rename
        last.rename(old)
    tmp.rename(last)
    shutil.rmtree(old, ignore_errors=True)
    if periodic:
        shutil.copytree(last, ckpt_root / f"step-{step:07d}", dirs_exist_ok=True)
        steps = sorted(ckpt_root.glob("step-*"))
        for d in steps[: max(0, len(steps) - keep)]:
            shutil.rmtree(d, ignore_errors=True)


def recover(ckpt_root: Path) -> None:
    """Undo what a kill inside `publish` left: `last` (or `best`) missing beside a complete `last.old`
    (killed between the two renames) gets `last.old` back; a stale `.old` beside its checkpoint goes.
    Resuming from the previous checkpoint replays the lost steps exactly."""
    for name in ("last", "best"):
        cur, old = ckpt_root / name, ckpt_root / f"{name}.old"
        if not old.is_dir():
            continue
        if cur.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.rename(cur)


def resumable(ckpt_root: Path) -> bool:
    """A checkpoint to resume from exists (`last`, or the `last.old` a kill inside `publish` left)."""
    return (ckpt_root / "last").is_dir() or (ckpt_root / "last.old").is_dir()


BEST_FILE = "best.json"


def write_best(directory: Path, metric: str, value: float, step: int) -> None:
    (directory / BEST_FILE).write_text(json.dumps({"metric": metric, "value": value, "step": step}))


def read_best(ckpt_root: Path, metric: str) -> float | None:
    """The value `checkpoints/best` holds for `metric` (None: no best yet, or a best by another metric)."""
    path = ckpt_root / "best" / BEST_FILE
    if not path.exists():
        return None
    best = json.loads(path.read_text())
    return float(best["value"]) if best.get("metric") == metric else None


def load(directory: Path, model, optimizer, scheduler, policy, rank: int) -> int:
    """Restore a checkpoint into live objects; returns the step to continue from."""
    state = torch.load(directory / "trainer_state.pt", map_location="cpu", weights_only=False)
    missing = set(state["model"]) - set(model.state_dict())
    if missing:
        raise RuntimeError(f"checkpoint has weights the model lacks: {sorted(missing)[:5]}")
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    policy.load_extra_state(state["extra"])
    rng = directory / f"rng-{rank}.pt"
    if rng.exists():
        set_rng_state(torch.load(rng, weights_only=False))
    return int(state["step"])
