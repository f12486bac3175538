"""Trainer config with `tiny` (CPU) and `paper` presets; overrides use the `train.` prefix on the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tla.config import apply_overrides


@dataclass
class TrainConfig:
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 8  # global samples per optimizer step (= per-process micro-batch x accum x processes)
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    max_grad_norm: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on a bf16 GPU, fp32 on CPU
    val_fraction: float = 0.05  # of the training split's *episodes*, carved off (seeded) for validation
    val_every: int = 200  # steps; 0 disables
    val_max_samples: int = 64  # validation loss + predict() metrics on at most this many samples
    save_every: int = 500  # steps; a checkpoint is also written at the end
    keep_checkpoints: int = 2  # periodic step-N checkpoints kept besides `last`
    log_every: int = 10
    seed: int = 0
    # DataLoader workers read + collate (composite, image processor, tokenizer) ahead of the model step
    num_workers: int = 1
    # torch intra-op threads (0: torch's default). On a small shared CPU box, OpenMP threads spin-wait
    # when another process holds a core: measured 9x slower steps with 2 threads vs 1 on the 2-core box.
    threads: int = 0
    # experiment tracking through accelerate: tensorboard writes RUN/tb/ (local files, no network);
    # trackio / wandb need their pip package; none: only train_log.jsonl
    report_to: Literal["tensorboard", "trackio", "wandb", "none"] = "tensorboard"
    # checkpoints/best: the checkpoint of the best value of this metric so far (a validation or rollout key;
    # lower is better except for rollout_success); none is written when the metric is never computed
    best_metric: str = "val_loss"
    # closed-loop success every N steps (0: off): rollout_episodes fixed-seed episodes in the simulator that
    # rendered the training data, cycling over its (shape, clearance) conditions; serial, on the main process
    rollout_every: int = 0
    rollout_episodes: int = 10
    rollout_seed: int = 0  # base seed of the rollout episodes (their own stream: never tla eval's episodes)


def train_preset(preset: str, overrides: list[str] | None = None) -> TrainConfig:
    """`tiny`: the tiny dataset (6k single-peg / 8k multi-peg samples) in ~10 min on 2 CPU cores:
    4 epochs (3 for multi-peg splits, set by the CLI), ~3000 steps at ~40 samples/s for the tiny TLA.
    `paper`: LoRA on Qwen2-VL-7B: lr 1e-4, global batch 16 (2 x 8 accumulation), 20 epochs (single-peg;
    the CLI uses 10 for multi-peg splits), 3% warm-up, cosine, bf16."""
    if preset == "tiny":
        cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-3, val_every=250, save_every=500, threads=1)
    elif preset == "paper":
        cfg = TrainConfig(
            epochs=20,
            batch_size=16,
            grad_accum=8,
            lr=1e-4,
            warmup_ratio=0.03,
            weight_decay=0.0,
            val_every=1000,
            save_every=1000,
            val_max_samples=128,
            num_workers=4,
        )
    else:
        raise ValueError(f"unknown train preset {preset!r}; choose tiny or paper")
    return apply_overrides(cfg, overrides or [])
