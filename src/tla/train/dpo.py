"""`tla dpo`: preference tuning (DPO) of a fine-tuned TLA run, through the shared trainer.

    tla dpo --run outputs/sp_tla --data DATA --out outputs/sp_tla_dpo [dpo.beta=0.1 train.lr=5e-6 ...]

1. Pairs (`tla.policies.tla.preference`): `dpo.samples` samples drawn (seeded) from the fine-tuning run's
   own training episodes; for each, the run's `dpo.candidates` best beams, chosen = the closest action to
   the label, rejected = the farthest; validation pairs from the run's held-out validation episodes (the
   same episodes, so this stage never validates on what the fine-tuning saw). Cached in OUT/pairs.jsonl.
2. DPO on them with the trainer (resume, validation L1 and collapse guard, checkpoints as for any run);
   OUT/policy is a plain TLA run (evaluate, serve, export it like any other).

Defaults follow VTLA (arXiv 2505.09577): ~2.4k pairs, lr 5e-6, 3 epochs; beta 0.1 (TRL's default).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import typer

from tla.config import apply_overrides, from_dict, to_dict
from tla.runinfo import write_atomic


@dataclass
class DPOConfig:
    samples: int = 2400  # training samples to propose candidates for (VTLA: ~2.4k pairs)
    val_samples: int = 64  # validation samples (from the fine-tuning run's validation episodes)
    candidates: int = 4  # beams returned per sample; the closest and the farthest make the pair
    beta: float = 0.1  # DPO temperature (TRL's default)
    # weight of the chosen answers' per-token NLL added to the DPO loss (RPO); 0 = plain DPO, as VTLA
    sft_weight: float = 0.0
    seed: int = 0  # which samples are drawn


# The trainer's settings for this stage (before the user's train.* overrides): VTLA's lr and epochs
DPO_TRAIN_DEFAULTS = ("epochs=3", "lr=5e-6", "warmup_ratio=0.1", "batch_size=16", "val_every=50",
                      "save_every=100", "min_lr_ratio=0.0")


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """`dpo.beta=0.2` -> the DPO config, `train.lr=1e-5` -> the trainer's; anything else is refused."""
    dpo = [o[len("dpo."):] for o in overrides if o.startswith("dpo.")]
    train = [o[len("train."):] for o in overrides if o.startswith("train.")]
    other = [o for o in overrides if not o.startswith(("dpo.", "train."))]
    if other:
        raise ValueError(f"tla dpo takes dpo.* and train.* overrides only (the policy is the fine-tuned run's); "
                         f"got {other}")
    return dpo, train


def sft_split(sft_run: Path, dataset) -> tuple[np.ndarray, np.ndarray]:
    """The (training, validation) sample indices the fine-tuning run used, recomputed from its recorded
    validation fraction and seed."""
    from tla.train.trainer import split_train_val

    train = json.loads((sft_run / "config.json").read_text())["train"]
    return split_train_val(dataset, train["val_fraction"], train["seed"])


def draw(indices: np.ndarray, n: int, seed: int, salt: int) -> np.ndarray:
    """n of `indices` (all when fewer), drawn without replacement, sorted (reading order of the data)."""
    pick = np.random.default_rng([seed, salt]).permutation(len(indices))[:n]
    return np.sort(np.asarray(indices)[pick])


def load_or_make_pairs(out: Path, policy, dataset, train_idx, val_idx, cfg: DPOConfig, sft_run: Path,
                       progress: bool = True):
    """(training pairs, validation pairs), read from OUT/pairs.jsonl when it was made by the same run and
    settings, else made and written (atomically, so a kill never leaves half a file that looks whole)."""
    from tla.policies.tla.preference import Pair, make_pairs

    key = {"sft_run": str(sft_run.resolve()), "samples": cfg.samples, "val_samples": cfg.val_samples,
           "candidates": cfg.candidates, "seed": cfg.seed}
    path = out / "pairs.jsonl"
    if path.exists():
        lines = path.read_text().splitlines()
        head = json.loads(lines[0])
        if head.get("key") == key:
            rows = [json.loads(x) for x in lines[1:]]
            return ([Pair.from_dict(r["pair"]) for r in rows if r["split"] == "train"],
                    [Pair.from_dict(r["pair"]) for r in rows if r["split"] == "val"])
    train_pairs = make_pairs(policy, dataset, draw(train_idx, cfg.samples, cfg.seed, 1), cfg.candidates,
                             progress=progress)
    val_pairs = make_pairs(policy, dataset, draw(val_idx, cfg.val_samples, cfg.seed, 2), cfg.candidates,
                           progress=progress)
    rows = [json.dumps({"key": key})]
    rows += [json.dumps({"split": s, "pair": p.to_dict()}) for s, ps in (("train", train_pairs), ("val", val_pairs))
             for p in ps]
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(rows) + "\n")
    return train_pairs, val_pairs


def pair_stats(pairs, asked: int) -> dict:
    """How many samples gave a pair, and how far apart chosen and rejected were (mm + mm + deg)."""
    chosen = np.array([p.l1_chosen for p in pairs])
    rejected = np.array([p.l1_rejected for p in pairs])
    finite = np.isfinite(rejected)
    return {"asked": int(asked), "pairs": len(pairs),
            "rejected_unparseable": int((~finite).sum()),
            "l1_chosen_mean": float(chosen.mean()) if len(pairs) else None,
            "l1_rejected_mean": float(rejected[finite].mean()) if finite.any() else None}


def dpo_run(sft_run: Path, data: Path, out: Path, overrides: list[str] | None = None, resume: bool = False,
            overwrite: bool = False, progress: bool = True, stop_after: int | None = None) -> dict:
    """`tla dpo` as a function; returns the trainer's summary plus the pairs' statistics."""
    from tla.policies.registry import load_policy, policy_config, policy_name
    from tla.policies.tla.preference import PairDataset, PreferencePolicy
    from tla.train.cli import _dataset, _versions, existing_run
    from tla.train.config import TrainConfig, train_preset
    from tla.train.trainer import episode_ids, train

    sft_run, data, out, overrides = Path(sft_run), Path(data), Path(out), list(overrides or [])
    if policy_name(sft_run) != "tla":
        raise ValueError(f"tla dpo tunes a TLA run; {sft_run} is a {policy_name(sft_run)} run")
    # killed while making the pairs: no run was recorded yet, the cached pairs are reused by a fresh start
    prev = existing_run(out, resume and (out / "config.json").exists(), overwrite)
    if prev is not None:  # a resumed stage continues as recorded
        if overrides and overrides != prev["overrides"]:
            raise ValueError(f"--resume continues the DPO run in {out} as recorded (overrides {prev['overrides']}); "
                             f"drop {overrides} or start a new run (--overwrite or another --out)")
        overrides = prev["overrides"]
    dpo_ov, train_ov = split_overrides(overrides)
    cfg = apply_overrides(DPOConfig(), dpo_ov)
    sft_config = json.loads((sft_run / "config.json").read_text())
    sft_train = sft_config["train"]
    # the fine-tuning run's preset (tiny / paper: threads, workers, precision), seed and validation episodes
    tcfg = train_preset(sft_config.get("preset") or "tiny", [
        f"seed={sft_train['seed']}", f"threads={sft_train['threads']}", f"val_fraction={sft_train['val_fraction']}",
        *DPO_TRAIN_DEFAULTS, *train_ov])
    if prev is not None:
        tcfg = from_dict(TrainConfig, prev["train"])

    policy = load_policy(sft_run)
    split = sft_config.get("split") or "sp_train"  # the run's own training split (sp_train or mp_train)
    dataset = _dataset(data, split, policy)
    train_idx, val_idx = sft_split(sft_run, dataset)
    train_pairs, val_pairs = load_or_make_pairs(out, policy, dataset, train_idx, val_idx, cfg, sft_run, progress)
    if not train_pairs:
        raise ValueError(f"no preference pairs: every sample's {cfg.candidates} candidates were equally far from "
                         "the label (raise dpo.candidates)")
    pairs = PairDataset(dataset, train_pairs + val_pairs, episode_ids(dataset))
    n = len(train_pairs)
    trainee = PreferencePolicy(policy, beta=cfg.beta, sft_weight=cfg.sft_weight)
    stats = {"train": pair_stats(train_pairs, min(cfg.samples, len(train_idx))),
             "val": pair_stats(val_pairs, min(cfg.val_samples, len(val_idx)))}
    run_config = {
        "policy": "tla", "stage": "dpo", "sft_run": str(sft_run.resolve()), "data": str(data.resolve()),
        "split": split, "preset": sft_config.get("preset"), "seed": tcfg.seed,
        "overrides": overrides, "dpo": to_dict(cfg), "pairs": stats, "versions": _versions(),
        "policy_config": policy_config(policy), "model": policy.describe(),
    }
    summary = train(trainee, pairs, tcfg, out, run_config, resume=prev is not None, stop_after=stop_after,
                    split=(np.arange(n), np.arange(n, len(pairs))))
    return {**summary, "pairs": stats, "dpo": asdict(cfg)}


def dpo_cmd(
    run: Path = typer.Option(..., help="the fine-tuned TLA run (tla train / tla reproduce runs/sp_tla)"),
    data: Path = typer.Option(..., help="the dataset it was trained on"),
    out: Path = typer.Option(..., help="the DPO run directory (a plain TLA run when done)"),
    resume: bool = typer.Option(False, help="continue the DPO run in OUT as recorded"),
    overwrite: bool = typer.Option(False, help="replace the run already in OUT"),
    overrides: list[str] = typer.Argument(None, help="dpo.beta=0.1 dpo.samples=2400 train.lr=5e-6 train.epochs=3"),
) -> None:
    """Preference tuning (DPO) of a fine-tuned TLA on pairs of its own answers: chosen = the candidate closest
    to the label, rejected = the farthest. OUT/policy is a TLA run."""
    summary = dpo_run(run, data, out, list(overrides or []), resume, overwrite)
    typer.echo(json.dumps(summary, indent=2, default=str))
