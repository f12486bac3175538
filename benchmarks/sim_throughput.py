"""Simulator throughput benchmark: prints one JSON object (median of several repetitions, one core).

    .venv/bin/python benchmarks/sim_throughput.py [--n 100] [--repeats 5]
"""

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from tla.runinfo import hardware, versions  # noqa: E402
from tla.sim.bench import sequences_per_second  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    result = sequences_per_second(n=args.n, repeats=args.repeats)
    result.update(hardware=hardware(), versions=versions(), load_average=os.getloadavg())
    print(json.dumps(result, indent=2))
