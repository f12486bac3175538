"""CPU throughput of the baselines (tiny presets unless --preset paper): training samples/s and per-action
inference latency (batch 1) for BC and Diffusion Policy (DDPM-100, DDIM-10). Prints JSON; medians over
--reps repetitions. Inputs are synthetic 240 x 320 observations (timing does not depend on content).

    python benchmarks/baselines_bench.py [--preset tiny] [--reps 5] [--steps 5] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tla.policies.base import make_batch
from tla.policies.bc import BCConfig, BCPolicy
from tla.policies.dp import DPConfig, DPPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' synthetic items
from scaffold import synthetic_items  # noqa: E402


def train_rate(policy, items, steps: int, reps: int) -> float:
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-4)
    policy.model.train()
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(steps):  # collate (resize) is part of the cost, as in the trainer's main process
            loss, _ = policy.loss(policy.model, policy.collate(items))
            opt.zero_grad()
            loss.backward()
            opt.step()
            policy.after_optimizer_step()
        rates.append(steps * len(items) / (time.perf_counter() - t))
    return statistics.median(rates)


def latency_ms(policy, obs: np.ndarray, reps: int) -> float:
    batch = make_batch(obs, ["square"])
    policy.predict(batch)  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        policy.predict(batch)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    items = synthetic_items(args.batch, hw=(240, 320))
    obs = np.stack([items[0]["frames"]])
    out = {
        "preset": args.preset,
        "batch": args.batch,
        "frames": "8 x 240 x 320",
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "reps": args.reps,
    }

    bc = BCPolicy(BCConfig.preset_config(args.preset))
    bc.fit_normalizer(items)
    out["bc"] = {
        "params_M": sum(p.numel() for p in bc.model.parameters()) / 1e6,
        "train_samples_per_s": train_rate(bc, items, args.steps, args.reps),
        "latency_ms_per_action": latency_ms(bc, obs, args.reps),
    }

    dp_cfg = DPConfig.preset_config(args.preset)
    dp = DPPolicy(dp_cfg)
    dp.fit_normalizer(items)
    out["dp"] = {
        "params_M": sum(p.numel() for p in dp.model.parameters()) / 1e6,
        "noise_samples": dp_cfg.noise_samples,
        "train_samples_per_s": train_rate(dp, items, args.steps, args.reps),
    }
    for sampler, steps in (("ddpm", dp_cfg.num_train_timesteps), ("ddim", dp_cfg.ddim_steps)):
        p = DPPolicy(dp_cfg.replace(sampler=sampler))
        p.normalizer = dp.normalizer
        out["dp"][f"latency_ms_per_action_{sampler}{steps}"] = latency_ms(p, obs, args.reps)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
