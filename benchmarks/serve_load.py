"""Policy server under load: requests/s and client-side p50/p99 latency with 1 and 8 concurrent clients.

For each run (`--run DIR`, any trained policy; without one, untrained tiny BC and/or TLA policies are built
and saved to a temporary folder with `--tiny bc,tla`) a real uvicorn server is started on 127.0.0.1 (free
port) in this process; client threads (one httpx.Client each) send the same 8-frame PNG request (frames of
one simulated attempt, default 240 x 320) until `--requests` answers or `--max-seconds` per level. JSON out.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve_load.py --tiny bc,tla --requests 64
    .venv/bin/python benchmarks/serve_load.py --run outputs/runs/bc_sp --run outputs/runs/tla_sp
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from tla.client import encode_png
from tla.serve.app import ServeSettings, app_from_run, background_server


def observation(h: int, w: int) -> np.ndarray:
    from tla.config import apply_overrides
    from tla.sim.config import SimConfig
    from tla.sim.simulator import simulate_attempt

    cfg = apply_overrides(SimConfig(), [f"render.height={h}", f"render.width={w}"])
    return simulate_attempt(cfg, "square", 2.0, [1.8, 0.6, 3.0], np.random.default_rng(0)).frames


def tiny_run(name: str, root: Path) -> Path:
    from tla.policies.registry import build_policy

    d = root / f"tiny_{name}"
    build_policy(name, "tiny").save(d)
    return d


def load_level(url: str, body: bytes, clients: int, requests: int, max_seconds: float) -> dict:
    latencies, batches, server_ms, predict_ms, errors, lock = [], [], [], [], [0], threading.Lock()
    deadline = time.monotonic() + max_seconds
    left = [requests]

    def worker():
        with httpx.Client(base_url=url, timeout=120, headers={"content-type": "application/json"}) as c:
            while time.monotonic() < deadline:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                t = time.perf_counter()
                r = c.post("/act", content=body)
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt)
                        ans = r.json()
                        batches.append(ans["batch_size"])
                        server_ms.append(ans["latency_ms"])
                        predict_ms.append(ans["predict_ms"])
                    else:
                        errors[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "answered": len(ms), "errors": errors[0], "seconds": round(wall, 3),
            "requests_per_s": round(len(ms) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "mean_batch": round(float(np.mean(batches)), 2) if batches else None,
            "server_p50_ms": round(float(np.median(server_ms)), 2) if server_ms else None,
            "predict_p50_ms": round(float(np.median(predict_ms)), 2) if predict_ms else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], help="run dir (repeatable)")
    ap.add_argument("--tiny", default="", help="comma-separated untrained tiny policies to build when no --run: bc,tla,dp")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--requests", type=int, default=64, help="answers per level")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="time bound per level")
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    runs = [Path(r) for r in args.run] or [tiny_run(n.strip(), tmp) for n in args.tiny.split(",") if n.strip()]
    if not runs:
        ap.error("give --run DIR or --tiny bc,tla")
    frames = observation(args.height, args.width)
    body = json.dumps({"frames": [encode_png(f) for f in frames], "shape": "square"}).encode()
    result = {"benchmark": "serve_load", "frame_size": [args.height, args.width], "body_bytes": len(body),
              "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "torch_threads": torch.get_num_threads(),
              "machine": platform.platform(), "runs": []}
    for run in runs:
        settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
        with background_server(app_from_run(run, settings)) as url:
            policy = httpx.get(f"{url}/info").json()["policy"]
            load_level(url, body, 1, 3, args.max_seconds)  # warm-up
            levels = [load_level(url, body, int(c), args.requests, args.max_seconds) for c in args.clients.split(",")]
        result["runs"].append({"run": str(run), "policy": policy, "levels": levels})
        print(json.dumps(result["runs"][-1]), flush=True)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
