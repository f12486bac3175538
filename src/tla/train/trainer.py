"""The shared trainer: works on any `TrainablePolicy` (collate / loss / save), through `accelerate`.

Single process by default; `accelerate launch --num_processes N` gives DDP (gloo on CPU). One optimizer
step consumes `batch_size` samples, split over processes and `grad_accum` micro-batches, so the result
does not depend on how many processes share the work. The data order is a pure function of (seed,
step): resume restores the step, the weights, the optimizer, the scheduler and the RNG, and continues
exactly where an uninterrupted run would be.

Metrics go to train_log.jsonl and to accelerate's tracker (`train.report_to`: tensorboard in RUN/tb by
default) every `log_every` steps; validation every `val_every`, closed-loop rollouts every `rollout_every`
(off by default); `checkpoints/best` follows `train.best_metric`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DistributedType,
    broadcast_object_list,
    is_tensorboard_available,
    is_trackio_available,
    is_wandb_available,
    set_seed,
)
from tqdm.auto import tqdm

from tla.policies.base import batch_for, policy_modality
from tla.policies.collapse import check_collapse
from tla.policies.registry import save_policy
from tla.runinfo import write_atomic
from tla.train import checkpoint
from tla.train.config import TrainConfig
from tla.train.curves import plot_training
from tla.train.rollout import episode_plan, rollout, rollout_conditions


# --- data ---
def episode_ids(dataset) -> np.ndarray:
    """Episode index of every sample, read from a column when the dataset offers one (no image decode)."""
    for attr in ("episode_indices", "episode_index"):
        v = getattr(dataset, attr, None)
        if v is not None and not callable(v):
            return np.asarray(v)
    if hasattr(dataset, "column"):
        with contextlib.suppress(Exception):
            return np.asarray(dataset.column("episode_index"))
    scalars = getattr(dataset, "_scalars", None)  # TactileDataset's scalar columns (read once, no images)
    if isinstance(scalars, dict) and "episode_index" in scalars:
        return np.asarray(scalars["episode_index"])
    return np.asarray([dataset[i].get("episode_index", i) for i in range(len(dataset))])


def split_train_val(dataset, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set off the training split, disjoint by episode (attempts of one episode are
    near-duplicates: splitting them across train/val would leak)."""
    eps = episode_ids(dataset)
    uniq = np.unique(eps)
    n_val = round(fraction * len(uniq)) if fraction > 0 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and len(uniq) > 1 else 0), len(uniq) - 1)
    val_eps = np.random.default_rng([seed, 7]).permutation(uniq)[:n_val]
    is_val = np.isin(eps, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class Subset(torch.utils.data.Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[int(self.indices[i])]

    @property
    def actions(self) -> np.ndarray:
        """Labels without reading images, when the dataset offers them (normalisers need only these)."""
        return np.asarray(self.dataset.actions)[self.indices]


def step_batch(n: int, batch_size: int, steps_per_epoch: int, seed: int, step: int) -> np.ndarray:
    """Indices (into the training subset) of the global batch of optimizer step `step`."""
    epoch, pos = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[pos * batch_size : (pos + 1) * batch_size]


class StepBatches(torch.utils.data.Sampler):
    """Micro-batch index lists of this process from optimizer step `start` to `end`: the DataLoader's
    batch sampler, so workers can load and collate ahead while the order stays a function of the step."""

    def __init__(
        self, n, cfg: TrainConfig, steps_per_epoch: int, start: int, end: int, rank: int, world: int
    ):
        self.n, self.cfg, self.spe, self.start, self.end = n, cfg, steps_per_epoch, start, end
        self.rank, self.world = rank, world
        self.micro = cfg.batch_size // (cfg.grad_accum * world)

    def __len__(self) -> int:
        return (self.end - self.start) * self.cfg.grad_accum

    def __iter__(self):
        for step in range(self.start, self.end):
            idx = step_batch(self.n, self.cfg.batch_size, self.spe, self.cfg.seed, step)[
                self.rank :: self.world
            ]
            for k in range(self.cfg.grad_accum):
                yield [int(i) for i in idx[k * self.micro : (k + 1) * self.micro]]


# --- schedule ---
def cosine_with_warmup(total: int, warmup: int, min_ratio: float):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def mixed_precision(name: str) -> str:
    if name != "auto":
        return name
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


# --- validation ---
@torch.no_grad()
def validate(policy, model, items: Subset, cfg: TrainConfig, micro: int, accelerator) -> dict:
    n = min(len(items), cfg.val_max_samples)
    if n == 0:
        return {}
    model.eval()
    losses = []
    for i in range(0, n, micro):
        batch = policy.collate([items[j] for j in range(i, min(n, i + micro))])
        batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with accelerator.autocast():
            losses.append(float(policy.loss(model, batch)[0]))
    sample = [items[j] for j in range(n)]
    own = getattr(policy, "validation_metrics", None)  # a policy that answers something else than actions
    if own is not None:
        out = {"val_loss": float(np.mean(losses)), **own(sample)}
        model.train()
        return out
    batch = batch_for(policy, np.stack([s["frames"] for s in sample]), [s["shape"] for s in sample])
    pred = policy.predict(batch)
    model.train()
    err = np.abs(np.asarray(pred.actions) - np.stack([s["action"] for s in sample]))
    out = {
        "val_loss": float(np.mean(losses)),
        "val_l1_x": float(err[:, 0].mean()),
        "val_l1_y": float(err[:, 1].mean()),
        "val_l1_rz": float(err[:, 2].mean()),
    }
    if pred.parse_ok is not None:
        out["val_parse_fail"] = float(1 - np.mean(pred.parse_ok))
    collapse = check_collapse(pred.actions)
    out.update(val_distinct_answers=collapse.distinct_answers, val_modal_share=collapse.modal_share,
               val_collapsed=collapse.collapsed)
    return out


# --- tracking ---
TRACKERS = {
    "tensorboard": is_tensorboard_available,
    "trackio": is_trackio_available,
    "wandb": is_wandb_available,
}


def log_with(report_to: str) -> str | None:
    """accelerate's `log_with` for `train.report_to`. A missing package is an error naming it: accelerate
    itself would drop the tracker with only a debug message."""
    if report_to == "none":
        return None
    if report_to not in TRACKERS:
        raise ValueError(f"train.report_to={report_to!r}: choose one of {sorted(TRACKERS)} or none")
    if not TRACKERS[report_to]():
        raise ModuleNotFoundError(f"train.report_to={report_to} needs the `{report_to}` package: "
                                  f"pip install {report_to} (or train.report_to=none)")
    return report_to


def flat_config(config: dict, prefix: str = "") -> dict:
    """The run config as the flat scalars every tracker accepts (tensorboard's hparams take no nesting)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
    return out


def start_tracking(acc, cfg: TrainConfig, run_dir: Path, run_config: dict, step: int) -> None:
    """Open the run in the tracker: tensorboard under RUN/tb (its project name is that folder's name)."""
    if cfg.report_to == "none":
        return
    kwargs = {
        # resumed at `step`: hide the events an earlier invocation logged after it; this one logs them again
        "tensorboard": {"purge_step": step + 1} if step else {},
        "wandb": {"name": run_dir.name, "dir": str(run_dir)},
        "trackio": {"name": run_dir.name},
    }
    project = "tb" if cfg.report_to == "tensorboard" else "tla"
    acc.init_trackers(project, config=flat_config(run_config), init_kwargs=kwargs)


def end_tracking(acc) -> None:
    """Close the trackers. Not `accelerator.end_training()`: it also destroys the process group, which the
    caller may still need (a launched script that trains again, or reads the world size, after `train`)."""
    for tracker in acc.trackers:
        tracker.finish()
    acc.trackers = []


def tracker_values(record: dict) -> dict:
    """A train_log record as tracker scalars: loss -> train/loss, val_loss -> val/loss,
    rollout_success -> rollout/success."""
    split = record.get("split", "train")
    return {f"{split}/{k.removeprefix(split + '_')}": float(v) for k, v in record.items()
            if k not in ("step", "split") and isinstance(v, (int, float))}


# --- run files ---
def truncate_log(path: Path, step: int) -> None:
    """Keep the train_log rows up to `step` (the checkpoint a run resumes from): the rows logged after it
    are logged again by the resumed run (the loss curve would double back), and a row cut by a kill
    (no newline) goes too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if line.endswith("\n") and isinstance(row, dict) and row.get("step", 0) <= step:
            kept.append(line)
    write_atomic(path, "".join(kept))


# --- best checkpoint ---
HIGHER_IS_BETTER = {"rollout_success"}  # every other metric (losses, L1 errors, attempts): lower is better


def improves(metric: str, value: float | None, best: float | None) -> bool:
    if value is None or not math.isfinite(value):  # a diverged (NaN) validation is never the best
        return False
    if best is None:
        return True
    return value > best if metric in HIGHER_IS_BETTER else value < best


# --- training ---
# Validation, rollouts and checkpoints run the unwrapped model on the main process while the others wait:
# right when every process holds the whole model and optimizer (data parallel); a hang or a partial
# checkpoint when they are sharded, so these backends are refused.
UNSUPPORTED = {DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MEGATRON_LM}


def make_accelerator(cfg: TrainConfig, run_dir: Path) -> Accelerator:
    tracker = log_with(cfg.report_to)
    # cpu=True without CUDA: under `accelerate launch --multi_gpu` (torchrun) accelerate picks DDP over gloo
    # accelerate scales each micro-batch loss by 1/grad_accum
    acc = Accelerator(
        mixed_precision=mixed_precision(cfg.mixed_precision),
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=tracker,
        project_dir=str(run_dir) if tracker else None,
    )
    if acc.distributed_type in UNSUPPORTED:
        raise ValueError(f"the trainer runs data parallel only (DDP, or one process); got "
                         f"{acc.distributed_type}: use configs/accelerate/paper_ddp.yaml or cpu_ddp2.yaml")
    return acc


def rollout_plan(policy, dataset, train_idx: np.ndarray, cfg: TrainConfig) -> list:
    """The fixed episodes of the periodic rollouts ([] when off); refused before any training when the
    simulator that rendered the data is unknown."""
    if not cfg.rollout_every:
        return []
    if policy.sim_config is None:
        raise ValueError("train.rollout_every needs the simulator config of the training data (a dataset "
                         "built by `tla data build` records it); this dataset has none: set train.rollout_every=0")
    return episode_plan(rollout_conditions(dataset, train_idx), cfg.rollout_episodes, cfg.rollout_seed)


def record_observation(policy, dataset) -> None:
    """The policy remembers what it trains on (saved beside its weights); a dataset read in another
    modality than the policy's is refused before any work."""
    spec = getattr(dataset, "observation_spec", None)
    if spec is not None and spec.modality != policy_modality(policy):
        raise ValueError(f"the {getattr(policy, 'name', 'policy')} policy reads {policy_modality(policy)!r} but "
                         f"the dataset gives {spec.describe()}; open it with modality={policy_modality(policy)!r}")
    policy.observation_spec = spec
    policy.sim_config = getattr(dataset, "sim_config", None)


def train(
    policy,
    dataset,
    cfg: TrainConfig,
    run_dir: str | Path,
    run_config: dict | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Train `policy` on `dataset`; writes run_dir/{config.json, train_log.jsonl, tb/, checkpoints/, policy/}.

    `policy/` holds the final weights (what `load_policy(run_dir)` and `tla eval --run RUN` use);
    `checkpoints/best` the weights of the best `train.best_metric` (evaluate them with
    `--run RUN/checkpoints/best`). `stop_after` ends this invocation after that many optimizer steps (an
    interruption, for tests); `resume=True` continues from checkpoints/last and keeps checkpoints/best.
    `split`: (training, validation) indices into `dataset` chosen by the caller (a later stage that must
    validate on the episodes its first stage held out); default: `split_train_val` by episode.
    """
    run_dir = Path(run_dir)
    record_observation(policy, dataset)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenizer use
    acc = make_accelerator(cfg, run_dir)
    world, rank = acc.num_processes, acc.process_index
    if cfg.batch_size % (cfg.grad_accum * world):
        raise ValueError(
            f"batch_size {cfg.batch_size} must divide into grad_accum {cfg.grad_accum} x {world} processes"
        )
    micro = cfg.batch_size // (cfg.grad_accum * world)
    set_seed(cfg.seed)

    train_idx, val_idx = split if split is not None else split_train_val(dataset, cfg.val_fraction, cfg.seed)
    train_set, val_set = Subset(dataset, train_idx), Subset(dataset, val_idx)
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training samples is less than one batch of {cfg.batch_size}")
    total = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    plan = rollout_plan(policy, dataset, train_idx, cfg)
    policy.fit_normalizer(train_set)

    model = policy.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, warmup, cfg.min_lr_ratio))
    ddp_model, opt = acc.prepare(model, opt)

    run_config = {
        **(run_config or {}),
        "train": dataclasses.asdict(cfg),
        "total_steps": total,
        "steps_per_epoch": steps_per_epoch,
        "train_samples": len(train_set),
        "val_samples": len(val_set),
        "num_processes": world,
    }
    ckpt_root = run_dir / "checkpoints"
    step = 0
    if resume and acc.is_main_process:
        checkpoint.recover(ckpt_root)  # a kill inside a checkpoint's publish left `last.old` only
    acc.wait_for_everyone()
    if resume and (ckpt_root / "last").exists():
        step = checkpoint.load(ckpt_root / "last", model, opt, sched, policy, rank)
        acc.print(f"resumed from {ckpt_root / 'last'} at step {step}")
    best = checkpoint.read_best(ckpt_root, cfg.best_metric) if resume else None
    if acc.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "config.json", json.dumps(run_config, indent=2))
        if resume:  # the rows an earlier invocation logged after the checkpoint: this one logs them again
            truncate_log(run_dir / "train_log.jsonl", step)
    start_tracking(acc, cfg, run_dir, run_config, step)
    log = (run_dir / "train_log.jsonl").open("a") if acc.is_main_process else None

    def save(step: int, periodic: bool = False, name: str = "last") -> None:
        tmp = ckpt_root / "tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        checkpoint.write_rng(tmp, rank)
        acc.wait_for_everyone()
        if acc.is_main_process:
            checkpoint.write_main(tmp, policy, model, opt, sched, step, run_config)
            if name == "best":
                checkpoint.write_best(tmp, cfg.best_metric, best, step)
            checkpoint.publish(tmp, ckpt_root, step, periodic, cfg.keep_checkpoints, name)
        acc.wait_for_everyone()

    def emit(record: dict) -> None:
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()
            acc.log(tracker_values(record), step=record["step"])

    end = total if stop_after is None else min(total, step + stop_after)
    bar = tqdm(
        total=total, initial=step, disable=not acc.is_main_process, desc=f"train {policy.name}", unit="step"
    )
    ddp_model.train()
    t0, start_step, last_val, last_rollout = time.time(), step, {}, {}
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=StepBatches(len(train_set), cfg, steps_per_epoch, step, end, rank, world),
        collate_fn=policy.collate,
        num_workers=cfg.num_workers,
        pin_memory=torch.cuda.is_available(),
        # its own generator: worker seeding must not draw from the global RNG (dropout draws; exact resume)
        generator=torch.Generator().manual_seed(cfg.seed + step),
    )
    batches = iter(loader)
    while step < end:
        loss_sum = torch.zeros((), device=acc.device)
        for _ in range(cfg.grad_accum):
            batch = {key: v.to(acc.device) if torch.is_tensor(v) else v for key, v in next(batches).items()}
            # accumulate() counts the micro-batches: gradients are all-reduced (DDP) on the step's last only
            with acc.accumulate(ddp_model), acc.autocast():
                loss, metrics = policy.loss(ddp_model, batch)
                acc.backward(loss)
            loss_sum += loss.detach() / cfg.grad_accum
        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        policy.after_optimizer_step()
        step += 1
        bar.update(1)

        if step % cfg.log_every == 0 or step == end:
            loss_mean = float(acc.reduce(loss_sum, "mean"))
            dt = time.time() - t0
            rate = (step - start_step) * cfg.batch_size / max(dt, 1e-9)
            rec = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": loss_mean,
                "lr": sched.get_last_lr()[0],
                "samples_per_s": round(rate, 3),
                "elapsed_s": round(dt, 2),
                "eta_s": round((total - step) * cfg.batch_size / max(rate, 1e-9), 1),
            }
            if grad_norm is not None:
                rec["grad_norm"] = float(grad_norm)
            rec.update(
                {k: v for k, v in (metrics or {}).items() if k not in rec}
            )  # policy's own (last micro)
            emit(rec)
            bar.set_postfix(loss=f"{loss_mean:.4f}", lr=f"{rec['lr']:.2e}")
        scores = {}  # this step's validation / rollout metrics (main process), for the best checkpoint
        validating = bool(cfg.val_every and len(val_set)) and (step % cfg.val_every == 0 or step == total)
        if validating:
            if acc.is_main_process:
                last_val = {"step": step, **validate(policy, model, val_set, cfg, micro, acc)}
                emit({"split": "val", **last_val})
                scores.update(last_val)
                if last_val.get("val_collapsed"):
                    tqdm.write(f"WARNING step {step}: COLLAPSED - {policy.name} gives one action for "
                               f"{100 * last_val['val_modal_share']:.0f}% of the validation samples "
                               f"({last_val['val_distinct_answers']} distinct answers)", file=sys.stderr)
            acc.wait_for_everyone()
        rolling = bool(plan) and (step % cfg.rollout_every == 0 or step == total)
        if rolling:
            if acc.is_main_process:
                last_rollout = {"step": step, **rollout(policy, policy.sim_config, plan)}
                emit({"split": "rollout", **last_rollout})
                scores.update(last_rollout)
            acc.wait_for_everyone()
        # best before last: killed between the two, the resumed run replays this step from the previous
        # `last`, finds the same value (no improvement on itself) and keeps this `best`, as uninterrupted
        if validating or rolling:
            value = scores.get(cfg.best_metric)
            new_best = broadcast_object_list([value if improves(cfg.best_metric, value, best) else None])[0]
            if new_best is not None:
                best = new_best
                save(step, name="best")
        if step % cfg.save_every == 0 or step == end:
            save(step, periodic=step % cfg.save_every == 0)
    bar.close()
    del batches, loader  # shut the loader's worker down now: a lingering one holds ~1 GB per finished run

    if acc.is_main_process:
        plot_training(run_dir)
    if step == total and acc.is_main_process:
        save_policy(policy, run_dir / "policy")
    acc.wait_for_everyone()
    end_tracking(acc)
    if log is not None:
        log.close()
    return {
        "step": step,
        "total_steps": total,
        "finished": step == total,
        "val": last_val,
        "rollout": last_rollout,
        "best": {"metric": cfg.best_metric, "value": best},
        "collapsed": bool(last_val.get("val_collapsed", False)),
        "elapsed_s": time.time() - t0,
    }
