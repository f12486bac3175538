"""Fault injection: `tla data build` and `tla train` are SIGKILLed at random moments (delays from a seeded
numpy Generator, uniform between the moment an uninterrupted run began its work, i.e. wrote its first file,
and its end), rerun to completion, and must leave exactly what the uninterrupted run left (what may differ,
wall-clock fields and the like, is listed in tests/faults.py). `tla reproduce` has its kill test beside its
other tests (tests/experiments/test_reproduce.py), on the smoke run they share.

Each command first runs uninterrupted in a folder that is then renamed to `ref`; the killed runs use the
same folder name, so the paths recorded in the outputs agree. The whole process group is killed (a job
scheduler's kill, or the machine going away): worker processes die with their parent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from faults import complete, differences, kill_after, steps_once

# `make test` runs the slow tests too: the mark only names the module's cost (~1-2 min on 2 cores)
pytestmark = pytest.mark.slow

RNG_SEED = 20251201
KILLS = {"build": 3, "train": 3}
BC_TINY = ["--policy", "bc", "--max-steps", "120", "image_size=[24,32]", "embedding_size=8",
           "hidden_sizes=[8,8,8,8]", "head_hidden=16", "train.batch_size=4", "train.log_every=1",
           "train.save_every=4", "train.val_every=6", "train.val_fraction=0.2"]


def _inject(name: str, tmp: Path, command, timing: tuple[float, float]) -> list[str]:
    """Kill `command(out)` KILLS[name] times at seeded random moments of the uninterrupted run's `timing`
    (between the start of its work and its end: a kill during the imports tests nothing), rerun it to
    completion in `out`; returns what happened (for the failure message)."""
    out = tmp / name
    rng = np.random.default_rng([RNG_SEED, list(KILLS).index(name)])
    # early in the reference's work window, latest first: the killed runs are faster than the reference
    # (it paid the numba compile, the page cache is warm) and each rerun has less work left
    began, total = timing
    delays = sorted(began + rng.uniform(0.02, 0.3, KILLS[name]) * (total - began), reverse=True)
    log, story = tmp / f"{name}.log", []
    for d in delays:
        killed = kill_after(command(out), float(d), log)
        story.append(f"{'killed' if killed else 'finished before'} at {d:.1f} s")
    assert any(s.startswith("killed") for s in story), f"no kill landed before the end: {story}"
    complete(command(out), log)
    print(name, story, f"uninterrupted: work from {timing[0]:.1f} s to {timing[1]:.1f} s")
    return story


# ------------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


def _build_cmd(out: Path) -> list[str]:
    return ["data", "build", "--preset", "smoke", "--out", str(out), "--workers", "2"]


@pytest.fixture(scope="module")
def reference_data(work) -> tuple[Path, float]:
    """The smoke dataset built uninterrupted (the reference; also the training data below) and its time."""
    timing = complete(_build_cmd(work / "build"), work / "build-ref.log",
                       work / "build" / "meta" / "build.json")
    (work / "build").rename(work / "build-ref")
    return work / "build-ref", timing


def test_a_killed_data_build_reruns_to_the_same_dataset(work, reference_data):
    ref, timing = reference_data
    story = _inject("build", work, _build_cmd, timing)
    assert differences(ref, work / "build") == [], story
    info = json.loads((work / "build" / "meta" / "info.json").read_text())
    assert info["content_hash"] == json.loads((ref / "meta" / "info.json").read_text())["content_hash"]


def test_a_killed_training_resumes_to_the_same_weights_and_log(work, reference_data):
    data = reference_data[0]

    def train(out: Path) -> list[str]:  # what the user reruns: --resume once the run folder holds a run
        resume = ["--resume"] if (out / "config.json").exists() else []
        return ["train", "--data", str(data), "--out", str(out), *BC_TINY, *resume]

    timing = complete(train(work / "train"), work / "train-ref.log", work / "train" / "config.json")
    (work / "train").rename(work / "train-ref")
    story = _inject("train", work, train, timing)
    got, ref = work / "train", work / "train-ref"
    assert differences(ref, got) == [], story
    weights = "policy/model.safetensors"
    assert (got / weights).read_bytes() == (ref / weights).read_bytes()
    steps_once(got / "train_log.jsonl")
