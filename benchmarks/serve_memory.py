"""Policy server memory under concurrent large frames: peak RSS of the server process (VmHWM) while
`--clients` threads each send one /act request of 8 PNG frames of `side` x `side` px (smooth images: small
bodies, large decodes). One fresh server process per scenario, serving an untrained tiny BC policy:

- `unbounded`: the limits before the fix (per-frame pixel limit 2048 x 2048, every request decodes at once);
- `default`: today's ServeSettings (1 MP per frame from the header, 4 requests decoding at once), with the
  same 2048 px frames (refused from their header) and with the largest accepted frames (1024 px).

    .venv/bin/python benchmarks/serve_memory.py [--clients 16] > serve_memory.json

Target: peak under 1.5 GB in every scenario. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

SERVER = """
import sys, uvicorn
from tla.serve.app import ServeSettings, app_from_run
settings = ServeSettings(**{settings})
uvicorn.run(app_from_run(sys.argv[1], settings), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def scenario(run: Path, settings: dict, side: int, clients: int) -> dict:
    from tla.client import encode_png

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(settings=repr(settings)), str(run), str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        idle = kib(proc.pid, "VmRSS")
        yy, xx = np.mgrid[0:side, 0:side]
        frame = np.stack([(xx * 255 // side), (yy * 255 // side), np.full_like(xx, 128)], -1).astype(np.uint8)
        body = {"frames": [encode_png(frame, compression=9)] * 8, "shape": "square"}
        codes: list[int] = []

        def send():
            r = httpx.post(url + "/act", json=body, timeout=300)
            codes.append(r.status_code)

        threads = [threading.Thread(target=send) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"settings": settings, "frame_side_px": side, "clients": clients,
                "body_kb": round(len(json.dumps(body)) / 1024, 1), "status_codes": sorted(set(codes)),
                "idle_rss_mb": round(idle / 1024, 1), "peak_rss_mb": round(kib(proc.pid, "VmHWM") / 1024, 1),
                "seconds": round(time.perf_counter() - t0, 2)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    from tla.policies.registry import build_policy

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "bc"
        build_policy("bc", "tiny", ["image_size=[48,64]"]).save(run)
        big = {"max_body_bytes": 64 * 2**20}
        results = {
            "unbounded_2048px": scenario(run, {**big, "max_image_pixels": 2048 * 2048, "max_decodes_in_flight": 1024},
                                         2048, args.clients),
            "default_2048px": scenario(run, big, 2048, args.clients),
            "default_1024px": scenario(run, big, 1024, args.clients),
        }
    peak = max(r["peak_rss_mb"] for k, r in results.items() if k.startswith("default"))
    print(json.dumps({"benchmark": "serve_memory", "host": platform.node(), "python": platform.python_version(),
                      "target_peak_mb": 1536, "default_peak_mb": peak, "meets_target": peak < 1536,
                      "scenarios": results}, indent=2))


if __name__ == "__main__":
    main()
