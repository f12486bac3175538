"""Kill-and-rerun helpers shared by the fault-injection tests (tests/test_fault_injection.py and the reproduce
kill test in tests/experiments/test_reproduce.py): start a `tla` command in its own process group, SIGKILL
it, and compare two output trees.

What legitimately differs between an uninterrupted run and a killed-and-rerun one (compared without the named
fields, or not at all), and nothing else:
- wall-clock fields: `finalize_seconds` (dataset meta/info.json), `samples_per_s`, `elapsed_s`, `eta_s`
  (train_log.jsonl rows), `stage_seconds`, `metadata.time_utc` (results.json), `time_utc` (reproduce.json,
  every run.json), `seconds` (reproduce's stages/*.json markers);
- report.md (its wall-time table) and the tensorboard event files under tb/ (wall times in every event);
- torch.save files (trainer_state.pt, rng-*.pt): compared tensor by tensor, not byte by byte;
- the dataset's meta/.verified.json (a cache: shard sizes and mtimes) and the temp files of atomic writes
  a kill cut short (.NAME.tmp-PID, never read): not compared;
- when the two runs lived in different folders, the folder's own path wherever it is recorded.
Everything else, weights (safetensors) and predictions included, must be byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

WALL_CLOCK = {"finalize_seconds", "samples_per_s", "elapsed_s", "eta_s", "stage_seconds", "time_utc",
              "seconds"}
NOT_COMPARED = ("report.md",  # the wall time per stage
                ".verified.json")  # the dataset's cache of shards whose sha256 matched: sizes and mtimes
NOT_COMPARED_DIRS = ("tb",)  # tensorboard events: wall time in every record
TEMP = re.compile(r"\..+\.tmp-\d+")  # an atomic write the kill cut short (.NAME.tmp-PID): never read


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def start(args: list[str], log: Path) -> subprocess.Popen:
    """`tla ARGS` in its own process group (its data workers die with it), output appended to `log`."""
    with open(log, "ab") as f:
        return subprocess.Popen([sys.executable, "-m", "tla.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                                env=env(), start_new_session=True)


def kill(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def complete(args: list[str], log: Path, ready: Path | None = None,
             timeout: float = 1200) -> tuple[float, float]:
    """Run to completion; returns (seconds until `ready` appeared: the work began after the imports, total
    seconds)."""
    t0 = time.perf_counter()
    p = start(args, log)
    began = None
    try:
        while p.poll() is None and time.perf_counter() - t0 < timeout:
            if began is None and ready is not None and ready.exists():
                began = time.perf_counter() - t0
            time.sleep(0.02)
    finally:
        if p.poll() is None:
            kill(p)
    assert p.returncode == 0, f"{args} exited {p.returncode}:\n{log.read_text()[-3000:]}"
    total = time.perf_counter() - t0
    return (began if began is not None else 0.0), total


def kill_after(args: list[str], delay: float, log: Path) -> bool:
    """Start the command, SIGKILL it (its process group) after `delay` s; False if it finished first."""
    p = start(args, log)
    try:
        p.wait(delay)
        assert p.returncode == 0, f"{args} exited {p.returncode} before its kill:\n{log.read_text()[-3000:]}"
        return False
    except subprocess.TimeoutExpired:
        kill(p)
        return True


# ------------------------------------------------------------------------------------------ comparison
def _strip(x, moved: tuple[str, str] | None):
    """x without wall-clock fields; with `moved` = (old root, new root), paths under the old root rewritten."""
    if isinstance(x, dict):
        return {k: _strip(v, moved) for k, v in x.items() if k not in WALL_CLOCK}
    if isinstance(x, (list, tuple)):
        return type(x)(_strip(v, moved) for v in x)
    if isinstance(x, str) and moved:
        return x.replace(*moved)
    return x


def _same_torch(a, b, moved=None) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_torch(a[k], b[k], moved) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_torch(x, y, moved) for x, y in zip(a, b))
    return _strip(a, moved) == b


def _files(root: Path) -> dict[str, Path]:
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not set(rel.parts[:-1]) & set(NOT_COMPARED_DIRS) and rel.name not in NOT_COMPARED \
                and not TEMP.fullmatch(rel.name):
            out[rel.as_posix()] = p
    return out


def differences(ref: Path, got: Path) -> list[str]:
    """What differs between two output trees, beyond the wall-clock exceptions above (and, when they are
    different folders, the reference's own path recorded in its files)."""
    moved = None if ref.resolve() == got.resolve() else (str(ref), str(got))
    a, b = _files(ref), _files(got)
    diffs = [f"only in the reference: {k}" for k in sorted(a.keys() - b.keys())]
    diffs += [f"only after the kills: {k}" for k in sorted(b.keys() - a.keys())]
    for rel in sorted(a.keys() & b.keys()):
        x, y = a[rel], b[rel]
        if x.suffix == ".pt":
            same = _same_torch(torch.load(x, weights_only=False), torch.load(y, weights_only=False), moved)
        elif x.suffix == ".json":
            same = _strip(json.loads(x.read_text()), moved) == _strip(json.loads(y.read_text()), None)
        elif x.suffix == ".jsonl":
            same = [_strip(json.loads(r), moved) for r in x.read_text().splitlines()] == [
                _strip(json.loads(r), None) for r in y.read_text().splitlines()]
        else:
            xb = x.read_bytes()
            same = (xb.replace(moved[0].encode(), moved[1].encode()) if moved else xb) == y.read_bytes()
        if not same:
            diffs.append(f"differs: {rel}")
    return diffs


def steps_once(log: Path) -> None:
    """Every optimizer step (and validation) logged once, in order: the loss plot does not double back."""
    rows = [json.loads(r) for r in log.read_text().splitlines()]
    for split in (None, "val"):
        steps = [r["step"] for r in rows if r.get("split") == split]
        assert steps == sorted(set(steps)), (log, split, steps)
