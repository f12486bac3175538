"""Offline evaluation (paper Tables I, II and Fig. 4): score predicted actions against test samples.

GCR (goal convergence rate): the share of samples for which the predicted action, applied to the sample's
true pose error, leaves the peg inside the goal region on all three axes:
|ex + dx| <= c/2 + eta, |ey + dy| <= c/2 + eta, |erz + drz| <= eta_rz.
L1 per axis (mm, mm, deg) between prediction and label, over the GCR samples (as in the paper) and over
all samples; per-axis direction accuracy (Fig. 4: the prediction moves the right way, or stays put within
tolerance when the label does); one-step insertion rate by the simulator's exact geometry; parse-failure
rate (TLA text that did not decode).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tla.eval.determinism import EVAL_THREADS, dumps, torch_threads
from tla.policies.collapse import check_collapse
from tla.sim import geometry as geo

AXES = ("x", "y", "rz")


@dataclass(frozen=True)
class GoalTolerance:
    eta: float = 0.1  # mm beyond c/2
    eta_rz: float = 0.5  # degrees


def goal_reached(errors: np.ndarray, actions: np.ndarray, clearances: np.ndarray, tol: GoalTolerance) -> np.ndarray:
    """(N,) bool: the action brings the error inside the goal region on all three axes."""
    after = np.abs(np.asarray(errors) + np.asarray(actions))
    band = np.asarray(clearances, dtype=float) / 2 + tol.eta
    return (after[:, 0] <= band) & (after[:, 1] <= band) & (after[:, 2] <= tol.eta_rz)


def direction_correct(actions: np.ndarray, labels: np.ndarray, tol: GoalTolerance) -> np.ndarray:
    """(N, 3) bool: same sign as the label, or |action| within tolerance where the label is zero."""
    actions, labels = np.asarray(actions), np.asarray(labels)
    still = np.array([tol.eta, tol.eta, tol.eta_rz])
    zero = np.abs(labels) < 1e-9
    return np.where(zero, np.abs(actions) <= still, np.sign(actions) == np.sign(labels))


# Label sizes for the direction breakdown: in the goal band (label 0), just beyond it (0 < |label| <
# SMALL_LABEL: the peg is less than half a millimetre / degree outside the band), and farther out.
SMALL_LABEL = 0.5  # mm for x / y, degrees for rz
LABEL_SIZES = ("zero", "small", "large")


def label_size(labels: np.ndarray) -> np.ndarray:
    """(N, 3) label sizes: 0 zero (no move needed on this axis), 1 small, 2 large (see `SMALL_LABEL`)."""
    size = np.abs(np.asarray(labels, dtype=float))
    return np.where(size < 1e-9, 0, np.where(size < SMALL_LABEL, 1, 2))


def direction_by_label_size(actions: np.ndarray, labels: np.ndarray, tol: GoalTolerance) -> dict:
    """Direction accuracy per axis and label size, with the sample counts: where a policy's direction errors
    lie. A label just beyond the band is where an answer of exactly 0 (a text policy's "stay") is wrong
    while a regressor's near-zero output with the right sign is counted right."""
    right = direction_correct(actions, labels, tol)
    size = label_size(labels)
    out = {}
    for i, axis in enumerate(AXES):
        for k, name in enumerate(LABEL_SIZES):
            pick = size[:, i] == k
            out[f"{axis}_{name}"] = {"accuracy": float(right[pick, i].mean()) if pick.any() else None,
                                     "samples": int(pick.sum())}
    return out


def one_step_inserts(errors, actions, clearances, shapes, size: float = 10.0, area_tol: float = 1e-3) -> np.ndarray:
    return np.array([
        geo.inserts(s, float(c), np.asarray(e) + np.asarray(a), size=size, area_tol=area_tol)
        for e, a, c, s in zip(errors, actions, clearances, shapes)
    ])


def offline_metrics(actions, labels, errors, clearances, shapes, parse_ok=None,
                    tol: GoalTolerance = GoalTolerance(), peg_size: float = 10.0, area_tol: float = 1e-3) -> dict:
    """Tables I/II metrics; `peg_size` / `area_tol` are the dataset's geometry (one-step insertion)."""
    actions, labels, errors = (np.asarray(x, dtype=float).reshape(-1, 3) for x in (actions, labels, errors))
    clearances = np.broadcast_to(np.asarray(clearances, dtype=float), (len(actions),))
    n = len(actions)
    if not (len(labels) == len(errors) == len(shapes) == n):
        raise ValueError(f"metric inputs disagree in length: {n} actions, {len(labels)} labels, "
                         f"{len(errors)} errors, {len(shapes)} shapes")
    goal = goal_reached(errors, actions, clearances, tol)
    l1 = np.abs(actions - labels)
    direction = direction_correct(actions, labels, tol)
    ok = np.ones(n, bool) if parse_ok is None else np.asarray(parse_ok, bool)
    out = {
        "samples": n,
        "gcr": float(goal.mean()) if n else float("nan"),
        "gcr_samples": int(goal.sum()),
        "one_step_insertion": float(one_step_inserts(errors, actions, clearances, shapes, peg_size, area_tol).mean())
        if n else float("nan"),
        "parse_failure_rate": float(1 - ok.mean()) if n else float("nan"),
        "tolerance": {"eta_mm": tol.eta, "eta_rz_deg": tol.eta_rz},
        "collapse": check_collapse(actions).to_dict(),
        "direction_by_label_size": direction_by_label_size(actions, labels, tol) if n else {},
    }
    for i, axis in enumerate(AXES):
        out[f"l1_{axis}_gcr"] = float(l1[goal, i].mean()) if goal.any() else float("nan")
        out[f"l1_{axis}_all"] = float(l1[:, i].mean()) if n else float("nan")
        out[f"direction_{axis}"] = float(direction[:, i].mean()) if n else float("nan")
    return out


VALIDATION = "validation"  # the split name for the episodes a run held out of its own training split


def training_record(run) -> dict:
    """The config.json the trainer wrote for `run` (a run, its policy/ or a checkpoint folder inside it)."""
    import json
    from pathlib import Path

    start = Path(run).resolve()
    for folder in (start, *list(start.parents)[:3]):
        f = folder / "config.json"
        if f.exists():
            record = json.loads(f.read_text())
            if "split" in record and "train" in record:
                return record
    raise FileNotFoundError(f"--split {VALIDATION} needs the run's training record (config.json, written by "
                            f"tla train) in {run} or a folder above it; none found")


def validation_indices(run, data) -> tuple[str, np.ndarray]:
    """(training split, sample indices) of the episodes `run` held out for validation: the trainer's own
    split (`tla.train.trainer.split_train_val`, by episode, with the run's val_fraction and seed), so
    settings can be chosen on them and never on a test split. The data must be the data the run trained on
    (same content hash, or the same folder when a dataset records none)."""
    import json
    from pathlib import Path

    from tla.data.dataset import TactileDataset
    from tla.train.trainer import split_train_val

    record = training_record(run)

    def identity(path) -> str:
        info = Path(path) / "meta" / "info.json"
        hashed = json.loads(info.read_text()).get("content_hash") if info.exists() else None
        return hashed or str(Path(path).resolve())

    if not Path(record["data"]).exists():
        raise FileNotFoundError(f"--split {VALIDATION}: {run} trained on {record['data']}, which is gone, so "
                                f"{data} cannot be checked against it; score a test split")
    if identity(data) != identity(record["data"]):
        raise ValueError(f"--split {VALIDATION}: {run} trained on {record['data']}, not on {data} (other "
                         "samples); pass the run's own dataset, or score a test split")
    train = record["train"]
    ds = TactileDataset(data, record["split"])
    _, held_out = split_train_val(ds, train["val_fraction"], train["seed"])
    if not len(held_out):
        raise ValueError(f"--split {VALIDATION}: {run} held no episodes out (train.val_fraction="
                         f"{train['val_fraction']}); score a test split")
    return record["split"], held_out


def evaluate_offline(run, data, split: str, out, limit: int = 0, batch_size: int = 16,
                     tol: GoalTolerance = GoalTolerance(), progress: bool = True,
                     threads: int = EVAL_THREADS, decode: str | None = None,
                     constrained: bool | None = None) -> dict:
    """Score the trained `run` on `split` of `data` (read in the run's modality; its spec must match the
    run's): writes out/{metrics.json, predictions.jsonl, fig4.png, run metadata}; returns the metrics.
    Predictions run on `threads` torch threads (the results depend on the count: it is recorded).
    `decode`, `constrained` (TLA runs only): score with this `generate.decode` / `generate.constrained`
    instead of the run's. `split="validation"`: the episodes the run held out of its training split
    (`validation_indices`)."""
    import json
    from pathlib import Path

    from tla.config import from_dict
    from tla.data.dataset import TactileDataset
    from tla.eval.figures import arrow_plot
    from tla.policies.base import batch_for, policy_modality
    from tla.policies.registry import load_policy
    from tla.progress import progress_bar
    from tla.runinfo import write_run_metadata
    from tla.sim.config import SimConfig
    from tla.sim.observation import check_same_spec

    out = Path(out)
    policy = load_policy(run, decode, constrained)
    read_split, indices = validation_indices(run, data) if split == VALIDATION else (split, None)
    ds = TactileDataset(data, read_split, modality=policy_modality(policy))
    check_same_spec(policy.observation_spec, ds.observation_spec, f"{data} ({read_split})")
    geometry = from_dict(SimConfig, ds.sim_config).geometry
    indices = np.arange(len(ds)) if indices is None else indices
    n = min(limit, len(indices)) if limit else len(indices)
    actions, texts, ok, items_meta = [], [], [], []
    bar_ = progress_bar(f"predict {split}", "samples", enabled=progress, transient=True)
    with torch_threads(threads), bar_ as bar:
        task = bar.add_task("predict", total=n)
        for start in range(0, n, batch_size):
            items = [ds[int(i)] for i in indices[start : min(start + batch_size, n)]]
            batch = batch_for(policy, np.stack([it["frames"] for it in items]), [it["shape"] for it in items])
            pred = policy.predict(batch)
            actions.append(pred.actions)
            texts += pred.texts or [None] * len(items)
            ok.append(np.ones(len(items), bool) if pred.parse_ok is None else pred.parse_ok)
            items_meta += [(it["action"], it["error"], it["clearance"], it["shape"]) for it in items]
            bar.advance(task, len(items))
    labels, errors, clearances, shapes = (list(col) for col in zip(*items_meta))
    actions, ok = np.concatenate(actions), np.concatenate(ok)
    metrics = offline_metrics(actions, labels, errors, clearances, shapes, ok, tol, geometry.peg_size,
                              geometry.insert_area_tol)
    metrics.update(policy=getattr(policy, "name", "?"), run=str(run), data=str(data), split=split,
                   torch_threads=threads)
    if split == VALIDATION:
        metrics["validation_of"] = read_split  # held-out episodes of this training split
    if getattr(policy, "name", "") == "tla":
        metrics["decode"] = policy.cfg.generate.decode
        metrics["constrained"] = policy.cfg.generate.constrained
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(dumps(metrics, indent=2))  # NaN (no GCR sample) -> null
    with open(out / "predictions.jsonl", "w") as f:
        for a, t, o, lab, e, s in zip(actions, texts, ok, labels, errors, shapes):
            f.write(json.dumps({"action": np.round(a, 4).tolist(), "text": t, "parse_ok": bool(o),
                                "label": np.round(lab, 4).tolist(), "error": np.round(e, 4).tolist(), "shape": s}) + "\n")
    arrow_plot(errors, actions, labels, out / "fig4.png", title=f"{metrics['policy']} on {split}", tol=tol)
    write_run_metadata(out, {"run": str(run), "data": str(data), "split": split, "limit": limit,
                             "eta": tol.eta, "eta_rz": tol.eta_rz, "torch_threads": threads,
                             "decode": decode, "constrained": constrained}, None)
    return metrics
