"""Dataset build throughput and storage (JSON to stdout and --out).

Builds a slice of the paper preset (240x320 frames, JPEG q95, the paper's split structure scaled to
--samples) with --workers processes, and reports samples/s, bytes/sample and the extrapolation to the full
32k-sample paper preset (target: < 10 min on 2 cores, i.e. >= 53 samples/s). It also times the parts on
one core (simulator attempt, image encoding PNG vs JPEG, parquet write) to show where the time goes.

    python benchmarks/data_build.py --samples 640 --workers 2 --out outputs/bench/data_build.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tla.data import store
from tla.data.build import build, run_episode, sim_config
from tla.data.config import PRESETS, SplitSpec


def _cpu() -> float:
    """CPU seconds of this process and its (finished) worker processes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def encoding_costs(frames: np.ndarray) -> dict:
    out = {}
    for name, fmt, kw in [("png_c1", "png", {"png_compression": 1}), ("png_c6", "png", {"png_compression": 6}),
                          ("jpeg_q90", "jpeg", {"jpeg_quality": 90}), ("jpeg_q95", "jpeg", {"jpeg_quality": 95})]:
        t = time.perf_counter()
        blobs = [store.encode_image(f, fmt, **kw) for f in frames]
        enc = (time.perf_counter() - t) / len(frames)
        t = time.perf_counter()
        dec = np.stack([store.decode_image(b) for b in blobs])
        dec_t = (time.perf_counter() - t) / len(frames)
        mse = float(np.mean((dec.astype(np.float64) - frames) ** 2))
        out[name] = {
            "bytes_per_sample": 8 * float(np.mean([len(b) for b in blobs])),
            "encode_ms_per_sample": 8e3 * enc,
            "decode_ms_per_sample": 8e3 * dec_t,
            "psnr_db": None if mse == 0 else 10 * np.log10(255**2 / mse),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=640, help="total samples of the timed build")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    base = PRESETS[args.preset]
    full_total = sum(s.samples for s in base.splits)
    share = args.samples / full_total
    splits = tuple(SplitSpec(s.name, max(len(s.shapes), round(s.samples * share)), s.shapes) for s in base.splits)
    cfg = dataclasses.replace(base, splits=splits, shard_size=64)
    sim_cfg = sim_config(cfg)

    # one core: simulator vs encoding vs parquet
    t = time.perf_counter()
    samples = [s for ep in range(16) for s in run_episode(cfg, sim_cfg, "sp_train", "square", 10_000 + ep)]
    sim_s = (time.perf_counter() - t) / len(samples)
    frames = np.concatenate([s["frames"] for s in samples])
    enc = encoding_costs(frames)

    tmp = Path(tempfile.mkdtemp(prefix="tla_bench_"))
    try:
        t, cpu0 = time.perf_counter(), _cpu()
        info = build(cfg, tmp / "ds", workers=args.workers, progress=False)
        wall, cpu = time.perf_counter() - t, _cpu() - cpu0
        n = info["total_samples"]
        data_bytes = sum((tmp / "ds" / f).stat().st_size for f in info["files"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rate = n / wall
    fmt = f"jpeg_q{cfg.jpeg_quality}" if cfg.image_format == "jpeg" else f"png_c{cfg.png_compression}"
    one_core = 1.0 / (sim_s + enc.get(fmt, {}).get("encode_ms_per_sample", 0) / 1e3)
    result = {
        "preset": args.preset,
        "frame_size": [sim_cfg.render.height, sim_cfg.render.width],
        "image_format": fmt,
        "workers": args.workers,
        "samples": n,
        "wall_s": round(wall, 2),
        "samples_per_s": round(rate, 2),
        "cpu_s_per_sample": round(cpu / n, 4),
        "samples_per_s_on_2_free_cores": round(2 * n / cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "bytes_per_sample": round(data_bytes / n),
        "full_preset_samples": full_total,
        "full_preset_minutes_extrapolated": round(full_total / rate / 60, 1),
        "full_preset_minutes_on_2_free_cores": round(full_total * cpu / n / 2 / 60, 1),
        "full_preset_gb_extrapolated": round(full_total * data_bytes / n / 1e9, 2),
        "target_samples_per_s": round(full_total / 600, 1),
        "one_core": {
            "sim_ms_per_sample": round(1e3 * sim_s, 2),
            "samples_per_s_sim_plus_encode": round(one_core, 1),
            "encodings": enc,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
