"""TLA tiny preset on CPU: training throughput and per-action inference latency (greedy vs beam search).

Collate (composite + image processor + tokenizer) is included in the step time; dataset decoding is not.
Trains the tiny policy briefly on synthetic 240x320 observations (which also measures training samples/s),
so that inference then produces answers of realistic length (~12 tokens), and times predict() on single
observations (one action = one call, as in the closed loop). Medians over repetitions; JSON to stdout.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tla_bench.py [--train-steps 80] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch

from tla.policies.base import make_batch
from tla.policies.tla import TLAPolicy
from tla.train.synthetic import SyntheticTactile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-steps", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--overrides", nargs="*", default=[])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    policy = TLAPolicy.build("tiny", args.overrides)
    ds = [it for it in SyntheticTactile(64, size=(240, 320))]  # materialised: time the policy, not the data
    model = policy.model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    collate_s, step_s = [], []
    for step in range(args.train_steps):
        idx = [(step * args.batch_size + k) % len(ds) for k in range(args.batch_size)]
        t0 = time.perf_counter()
        batch = policy.collate([ds[i] for i in idx])
        t1 = time.perf_counter()
        loss, _ = policy.loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        collate_s.append(t1 - t0)
        step_s.append(t2 - t0)
    warm = step_s[5:] or step_s
    med_step = statistics.median(warm)

    obs = [ds[i]["frames"][None] for i in range(args.reps)]
    batches = [make_batch(o, [ds[i]["shape"]]) for i, o in enumerate(obs)]
    latency, tokens, parse = {}, {}, {}
    for name, beams in (("greedy", 1), ("beam3", 3), ("beam5", 5)):
        policy.predict(batches[0], num_beams=beams)  # warm-up
        times, lens, oks = [], [], []
        for batch in batches:
            t0 = time.perf_counter()
            pred = policy.predict(batch, num_beams=beams)
            times.append(time.perf_counter() - t0)
            lens.append(len(policy.tokenizer(pred.texts[0])["input_ids"]))
            oks.append(bool(pred.parse_ok[0]))
        latency[name] = round(1000 * statistics.median(times), 2)
        tokens[name] = float(np.mean(lens))
        parse[name] = float(np.mean(oks))
    b8 = np.concatenate(obs[:8] if len(obs) >= 8 else obs * 8)[:8]
    t0 = time.perf_counter()
    policy.predict(make_batch(b8, ["square"] * 8), num_beams=3)
    batch8 = 1000 * (time.perf_counter() - t0) / 8

    trainable, total = policy.parameter_counts()
    print(
        json.dumps(
            {
                "benchmark": "tla_tiny_cpu",
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                },
                "model": {
                    "params": total,
                    "trainable": trainable,
                    "composite_size": policy.cfg.composite_size,
                    "text_layers": policy.cfg.model.tiny.text_layers,
                    "hidden": policy.cfg.model.tiny.text_hidden,
                    "vocab": len(policy.tokenizer),
                },
                "train": {
                    "batch_size": args.batch_size,
                    "steps": args.train_steps,
                    "final_loss": round(float(loss.detach()), 4),
                    "step_ms_median": round(1000 * med_step, 1),
                    "collate_ms_median": round(1000 * statistics.median(collate_s[5:] or collate_s), 1),
                    "samples_per_s": round(args.batch_size / med_step, 1),
                },
                "inference_ms_per_action_median": latency,
                "inference_ms_per_action_beam3_batch8": round(batch8, 2),
                "generated_tokens_mean": tokens,
                "parse_ok_rate": parse,
                "reps": args.reps,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
