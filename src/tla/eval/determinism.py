"""What makes an evaluation repeat bit for bit: a fixed torch thread count, and JSON without NaN.

A float reduction split over more threads adds in another order, so a policy's predictions (DP's
denoising loop most of all) change in the last bits with `torch.get_num_threads()`, which is whatever
the process was left with: a `tla reproduce` that trained first (train.threads) and one resumed after
training differed. Evaluation pins the count (EVAL_THREADS unless asked) and records it.
"""

from __future__ import annotations

import contextlib
import json
import math

EVAL_THREADS = 1  # on a small shared CPU box one thread is also the fastest (see train.threads)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to `n` inside the block, restored after."""
    import torch

    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def json_safe(x):
    """NaN / inf -> null, recursively: JSON has no NaN, and a bare NaN breaks strict readers."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps(obj, **kwargs) -> str:
    """Strict JSON (NaN / inf written as null); `kwargs` go to json.dumps."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)
