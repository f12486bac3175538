"""`tla ablate`: what each departure from the paper's TLA input does, across seeds, beside BC.

SP-TLA is trained on the single-peg split with the paper-faithful input (raw camera frames in the 3x3
composite, no position table, acting on the top beam), then with each departure the tiny preset keeps (the
marker-flow modality, the position table, the mean of the beams), alone and together, each for several
seeds (model initialisation and data order). The decoding needs no training: its rows evaluate the runs of
the row without it.
BC trains on the same data with the same seeds, on both inputs. Every run is
scored offline on sp_test (direction accuracy, GCR, L1) and in one closed-loop condition; the report gives
the mean and the spread (sample standard deviation, min-max) over seeds, and flags collapsed runs.

Stages are resumable like `tla reproduce` (stages/<name>.json markers, training resumes from its last
checkpoint); `ablation.json` records the configuration, and a rerun into the same folder with another one
is refused.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich.console import Console

from tla.eval.determinism import dumps as strict_dumps
from tla.experiments.reproduce import PRESETS, Stages
from tla.policies.registry import seed_overrides
from tla.pretrain.model import BASE_INPUT
from tla.runinfo import describe_hardware, hardware, run_metadata

console = Console()

class Variant(NamedTuple):
    """One row: the policy, its run key stem, its training overrides and how it is evaluated.

    Overrides are absolute (every input setting is named), so a row means the same whatever the presets say;
    the stems of the first rows are those of earlier versions of this table, so their finished runs stay
    valid (their inputs have not changed). `decode` and `constrained` (TLA) are inference settings
    (`generate.decode`: how the beams become an action; `generate.constrained`: beam search restricted to
    the answer grammar): they need no training, so the rows of one stem share their training runs and differ
    only in evaluation. `tunes`: the row whose trained run this row tunes further by preference (`tla dpo`,
    its `overrides` are then the dpo.* / train.* settings of that stage)."""

    policy: str
    stem: str
    overrides: tuple[str, ...]
    decode: str | None
    constrained: bool = False
    tunes: str | None = None


RGB_PAPER = ("modality=rgb", "preprocess.demarker=false", "preprocess.contrast=false", "model.position_table=false")
FLOW = ("modality=marker_flow", "preprocess.demarker=false", "preprocess.contrast=false")
FLOW_TABLE = (*FLOW, "model.position_table=true")
# contact reasoning (the answer states the contact before the action) needs a longer decoding budget
CONTACT = (*FLOW_TABLE, "answer=contact_action", "generate.max_new_tokens=78")
# the input of a `tla pretrain` base: marker flow, the 8 frames as labelled images, no position table (a stock
# Qwen2-VL has none); the from-scratch row of the pretraining comparison reads the same
BASE_FLOW = (*FLOW, "model.position_table=false", *(f"{k}={v}" for k, v in BASE_INPUT.items()))
# the paper's fine-tuning recipe on that base (AblationConfig.base): LoRA on the language model, vision tower
# and merger frozen; or every weight fine-tuned
ON_BASE = (*BASE_FLOW, "model.preset=pretrained", "model.path={base}")
# preference tuning (tla dpo) of the tiny preset's run: VTLA's recipe (DPO after fine-tuning, ~2.4k pairs,
# 3 epochs) at the settings of tla.train.dpo.DPOConfig
DPO = ()
# the answer's training target: '+' before positive numbers (each axis's direction is one token), and an
# auxiliary action loss on the answer-start state (weight 0.3: chosen on sp_train's validation episodes, seed 0,
# from 0.3 and 1.0)
SIGNED = (*FLOW_TABLE, "signed_answer=true")
AUX_WEIGHT = "action_aux_weight=0.3"
AUX = (*FLOW_TABLE, AUX_WEIGHT)
VARIANTS: dict[str, Variant] = {
    "SP-TLA paper input (rgb)": Variant("tla", "tla_paper_input", RGB_PAPER, "top"),
    "SP-TLA paper input + mean of beams": Variant("tla", "tla_paper_input", RGB_PAPER, "mean"),
    "SP-TLA rgb + demarker + contrast": Variant("tla", "tla_demarker_contrast", (
        "modality=rgb", "preprocess.demarker=true", "preprocess.contrast=true", "model.position_table=false"), "top"),
    "SP-TLA rgb + position table": Variant("tla", "tla_position_table", (
        "modality=rgb", "preprocess.demarker=false", "preprocess.contrast=false", "model.position_table=true"), "top"),
    "SP-TLA rgb + both": Variant("tla", "tla_both_tiny_preset", (
        "modality=rgb", "preprocess.demarker=true", "preprocess.contrast=true", "model.position_table=true"), "top"),
    "SP-TLA marker flow": Variant("tla", "tla_marker_flow", (*FLOW, "model.position_table=false"), "top"),
    "SP-TLA marker flow + mean of beams": Variant("tla", "tla_marker_flow", (*FLOW, "model.position_table=false"),
                                                  "mean"),
    "SP-TLA marker flow + frames layout (from scratch)": Variant("tla", "tla_flow_frames", BASE_FLOW, "top"),
    "SP-TLA marker flow + frames layout (from scratch) + mean of beams": Variant("tla", "tla_flow_frames",
                                                                                BASE_FLOW, "mean"),
    "SP-TLA pretrained base + LoRA (paper recipe)": Variant("tla", "tla_base_lora",
                                                            (*ON_BASE, "model.train_mode=lora"), "top"),
    "SP-TLA pretrained base + LoRA + mean of beams": Variant("tla", "tla_base_lora",
                                                             (*ON_BASE, "model.train_mode=lora"), "mean"),
    "SP-TLA pretrained base + full fine-tuning": Variant("tla", "tla_base_full",
                                                         (*ON_BASE, "model.train_mode=full"), "top"),
    "SP-TLA pretrained base + full fine-tuning + mean of beams": Variant("tla", "tla_base_full",
                                                                         (*ON_BASE, "model.train_mode=full"), "mean"),
    "SP-TLA marker flow + position table": Variant("tla", "tla_flow_table", FLOW_TABLE, "top"),
    "SP-TLA marker flow + position table + mean of beams (tiny preset)": Variant("tla", "tla_flow_table", FLOW_TABLE, "mean"),
    "SP-TLA tiny preset + constrained decoding": Variant("tla", "tla_flow_table", FLOW_TABLE, "mean", True),
    "SP-TLA tiny preset + contact reasoning": Variant("tla", "tla_flow_table_contact", CONTACT, "mean"),
    "SP-TLA tiny preset + contact reasoning + constrained decoding": Variant(
        "tla", "tla_flow_table_contact", CONTACT, "mean", True),
    "SP-TLA tiny preset + DPO": Variant("tla", "tla_flow_table_dpo", DPO, "mean",
                                        tunes="SP-TLA marker flow + position table"),
    "SP-TLA tiny preset + DPO, top beam": Variant("tla", "tla_flow_table_dpo", DPO, "top",
                                                  tunes="SP-TLA marker flow + position table"),
    # the least harmful of three DPO settings tried on the validation episodes of seed 0 (VTLA's, beta 0.5,
    # this): the chosen answers' likelihood kept up by an NLL term (RPO)
    "SP-TLA tiny preset + DPO + chosen NLL (RPO)": Variant("tla", "tla_flow_table_rpo", ("dpo.sft_weight=1.0",),
                                                           "mean", tunes="SP-TLA marker flow + position table"),
    "SP-TLA tiny preset + signed answer": Variant("tla", "tla_flow_table_signed", SIGNED, "mean"),
    "SP-TLA tiny preset + action aux loss": Variant("tla", "tla_flow_table_aux", AUX, "mean"),
    "SP-TLA tiny preset + signed answer + action aux loss": Variant(
        "tla", "tla_flow_table_signed_aux", (*SIGNED, AUX_WEIGHT), "mean"),
    # the pads interleaved in one video, each temporal patch both pads at one instant (tla.policies.tla.layout)
    "SP-TLA tiny preset + pairs layout": Variant("tla", "tla_flow_table_pairs",
                                                 (*FLOW_TABLE, "layout=pairs", "frame_size=56"), "mean"),
    "BC rgb": Variant("bc", "bc", ("modality=rgb",), None),
    "BC marker flow (tiny preset)": Variant("bc", "bc_flow", ("modality=marker_flow",), None),
}
# the answer rows (issue: contact reasoning and constrained decoding against the plain answer), selectable
ANSWER_VARIANTS = ("SP-TLA marker flow + position table + mean of beams (tiny preset)",
                   "SP-TLA tiny preset + constrained decoding", "SP-TLA tiny preset + contact reasoning",
                   "SP-TLA tiny preset + contact reasoning + constrained decoding", "BC marker flow (tiny preset)")
# the pretraining rows (issue: language grounding, part 2): from scratch vs the paper's recipe on the
# pretrained base vs full fine-tuning of it, the same input (the base's: BASE_FLOW), both decodings
PRETRAIN_VARIANTS = ("SP-TLA marker flow + frames layout (from scratch)",
                     "SP-TLA marker flow + frames layout (from scratch) + mean of beams",
                     "SP-TLA pretrained base + LoRA (paper recipe)", "SP-TLA pretrained base + LoRA + mean of beams",
                     "SP-TLA pretrained base + full fine-tuning",
                     "SP-TLA pretrained base + full fine-tuning + mean of beams",
                     "SP-TLA marker flow + position table + mean of beams (tiny preset)", "BC marker flow (tiny preset)")
# the preference-tuning rows (issue: language grounding, part 4): the tiny preset before and after DPO
DPO_VARIANTS = ("SP-TLA marker flow + position table",
                "SP-TLA marker flow + position table + mean of beams (tiny preset)",
                "SP-TLA tiny preset + DPO, top beam", "SP-TLA tiny preset + DPO",
                "SP-TLA tiny preset + DPO + chosen NLL (RPO)", "BC marker flow (tiny preset)")
# the training-target rows: the tiny preset's plain text vs the signed answer and the auxiliary action loss
TARGET_VARIANTS = ("SP-TLA marker flow + position table + mean of beams (tiny preset)",
                   "SP-TLA tiny preset + signed answer", "SP-TLA tiny preset + action aux loss",
                   "SP-TLA tiny preset + signed answer + action aux loss", "BC marker flow (tiny preset)")
# the input layout: the tiny preset's composite vs the pads interleaved in one video
LAYOUT_VARIANTS = ("SP-TLA marker flow + position table + mean of beams (tiny preset)",
                   "SP-TLA tiny preset + pairs layout", "BC marker flow (tiny preset)")
PAPER_INPUT = VARIANTS["SP-TLA paper input (rgb)"][2]
TINY_PRESET = {"tla": "SP-TLA marker flow + position table + mean of beams (tiny preset)",
               "bc": "BC marker flow (tiny preset)"}
# The default selection: the paper's input, each departure the tiny preset keeps, alone and together, and BC
# on both inputs. The rgb preprocessing rows (the previous tiny preset) are selectable.
DEFAULT_VARIANTS = ("SP-TLA paper input (rgb)", "SP-TLA paper input + mean of beams", "SP-TLA rgb + position table",
                    "SP-TLA marker flow", "SP-TLA marker flow + position table", TINY_PRESET["tla"], "BC rgb",
                    TINY_PRESET["bc"])
METRICS = ("direction_x", "direction_y", "direction_rz", "gcr", "l1_x_all", "l1_y_all", "l1_rz_all")


@dataclass
class AblationConfig:
    data_preset: str = "tiny"
    seeds: tuple[int, ...] = (0, 1, 2)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    # the same budgets as `tla reproduce --preset tiny`, so the ablation measures what make demo trains
    tla_steps: int = field(default_factory=lambda: PRESETS["tiny"].steps_for("tla"))
    bc_steps: int = field(default_factory=lambda: PRESETS["tiny"].steps_for("bc"))
    shape: str = "square"
    clearance: float = 1.0  # the hardest of Table III
    episodes: int = 50
    workers: int = 2
    train_overrides: list[str] = field(default_factory=list)
    # the `tla pretrain` model folder the pretrained-base rows fine-tune (model.path); None: no such rows
    base: str | None = None
    # out of distribution (off when empty): every run is also scored offline on mp_test_ood (peg shapes no
    # single-peg run saw) and in closed loop on these unseen shapes at ood_clearance (Table IV: 2.0 mm); a
    # selection like the seeds (one stage per shape), so it can be added to a finished ablation
    ood_shapes: tuple[str, ...] = ()
    ood_clearance: float = 2.0


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


@dataclass(frozen=True)
class AblationRun:
    key: str  # the training run (runs/<key>), shared by the rows of one stem
    eval_key: str  # its evaluation under this row's decoding (offline/<eval_key>, closed_loop/<eval_key>)
    row: str
    policy: str
    seed: int
    overrides: tuple[str, ...]
    decode: str | None
    constrained: bool = False
    tunes: AblationRun | None = None  # the run this one tunes by preference (its training stage comes first)


def runs(cfg: AblationConfig) -> list[AblationRun]:
    """Every (row, seed) of the selection, seed-major; a top-beam row keeps the evaluation key of the
    earlier versions (= its run key), a mean-of-beams row adds `_mean`, a constrained one `_constrained`."""
    return [ablation_run(cfg, v, seed) for seed in cfg.seeds for v in cfg.variants]


def ablation_run(cfg: AblationConfig, v: str, seed: int) -> AblationRun:
    """Row `v` at `seed`: its run key, evaluation key and training overrides (the seeds included)."""
    policy, stem, ov, decode, constrained, tunes = VARIANTS[v]
    if tunes is not None:  # a preference stage: the seed is the tuned run's; ov are the stage's settings
        source = ablation_run(cfg, tunes, seed)
        suffix = ("_mean" if decode == "mean" else "") + ("_constrained" if constrained else "")
        return AblationRun(f"{stem}_s{seed}", f"{stem}{suffix}_s{seed}", v, policy, seed, ov, decode, constrained,
                           tunes=source)
    if any("{base}" in o for o in ov):
        if not cfg.base:
            raise ValueError(f"the row {v!r} fine-tunes a pretrained base: pass --base OUT/model "
                             "(the model folder of `tla pretrain --out OUT`)")
        ov = tuple(o.replace("{base}", str(Path(cfg.base).resolve())) for o in ov)
    suffix = ("_mean" if decode == "mean" else "") + ("_constrained" if constrained else "")
    return AblationRun(f"{stem}_s{seed}", f"{stem}{suffix}_s{seed}", v, policy, seed,
                       (*ov, *seed_overrides(policy, seed)), decode, constrained)


# Which runs exist (seeds, variants) may grow between invocations: a run's result depends only on its own key
# and on the settings below, so `--seeds 0,1` can be extended to `--seeds 0,1,2` in the same folder.
SELECTION = ("seeds", "variants", "workers", "ood_shapes")


def check_same_config(out: Path, cfg: AblationConfig) -> None:
    """A folder holds one ablation: reusing its stages under other settings would mislabel them."""
    path = out / "ablation.json"
    mine = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in SELECTION}
    if path.exists():
        prev = {k: v for k, v in json.loads(path.read_text())["config"].items() if k not in SELECTION}
        added = json.loads(json.dumps(asdict(AblationConfig())))  # settings newer than the folder: their defaults
        prev = {**{k: v for k, v in added.items() if k not in SELECTION}, **prev}
        if prev != mine:
            changed = sorted(k for k in set(prev) | set(mine) if prev.get(k) != mine.get(k))
            raise ValueError(f"{out} holds an ablation with other settings ({', '.join(changed)}); "
                             "use another --out or delete the folder")


def reusable_run(candidate: Path, data: Path, policy: str, steps: int, overrides: list[str]) -> bool:
    """True when the finished run in `candidate` (e.g. `tla reproduce`'s runs/sp_tla) is exactly the run this
    ablation would train: same data, split, steps, and the same resolved trainer and policy configs."""
    from tla.train.cli import recorded_differences

    cfg_path = candidate / "config.json"
    if not (cfg_path.exists() and (candidate / "policy").is_dir()):
        return False
    done = json.loads(cfg_path.read_text())
    return (done.get("data") == str(Path(data).resolve())
            and not recorded_differences(done, policy, "sp_train", steps, overrides))


def ablate(cfg: AblationConfig, out: Path, data: Path | None = None, reuse: Path | None = None,
           report_only: bool = False) -> dict:
    """`reuse`: a `tla reproduce` output on the same data; its single-peg BC and SP-TLA runs stand in for the
    ablation's identical runs (checked config by config) instead of being trained again.
    `report_only`: train nothing; report the runs of the selection that are finished (each row lists its
    seeds), e.g. while other seeds are still training in another process."""
    from tla.data.build import build, with_seed
    from tla.data.config import preset as data_preset
    from tla.eval.closed_loop import evaluate_closed_loop
    from tla.eval.offline import evaluate_offline
    from tla.train.checkpoint import resumable
    from tla.train.cli import train_run
    from tla.train.dpo import dpo_run

    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {list(VARIANTS)}")
    out.mkdir(parents=True, exist_ok=True)
    check_same_config(out, cfg)
    (out / "ablation.json").write_text(json.dumps(
        {"config": asdict(cfg), **run_metadata(asdict(cfg), cfg.seeds[0])}, indent=2, default=str))
    stages = Stages(out)
    data = data or out / "data"
    if report_only:
        return _finish(out, cfg, partial_ok=True)
    if not (data / "meta" / "info.json").exists():
        stages.run("data", lambda: build(with_seed(data_preset(cfg.data_preset), 0), data, workers=cfg.workers))
    tiny_stems = {p: VARIANTS[name][1] for p, name in TINY_PRESET.items()}
    def train_stage(r: AblationRun) -> None:
        """Train r's run once (the decoding rows of a stem share it), reusing an identical `tla reproduce` run."""
        run_dir = out / "runs" / r.key
        if r.tunes is not None:  # preference tuning of another row's run, trained first
            train_stage(r.tunes)
            stages.run(f"train_{r.key}", partial(
                dpo_run, sft_run=out / "runs" / r.tunes.key, data=data, out=run_dir, overrides=list(r.overrides),
                resume=resumable(run_dir / "checkpoints"), overwrite=True, progress=False))
            return
        steps = cfg.bc_steps if r.policy == "bc" else cfg.tla_steps
        overrides = [*cfg.train_overrides, *r.overrides]
        source = (reuse / "runs" / ("bc_sp" if r.policy == "bc" else "sp_tla")
                  if reuse and r.key.startswith(tiny_stems[r.policy] + "_s") else None)
        if (source is not None and not (stages.dir / f"train_{r.key}.json").exists()
                and reusable_run(source, data, r.policy, steps, overrides)):
            shutil.copytree(source, run_dir, dirs_exist_ok=True)
            (stages.dir / f"train_{r.key}.json").write_text(json.dumps({"seconds": 0.0, "reused_from": str(source)}))
            console.print(f"[dim]{r.key}: reusing the identical run {source}[/dim]")
        stages.run(f"train_{r.key}", partial(
            train_run, data=data, out=run_dir, policy=r.policy, split="sp_train", preset="tiny",
            max_steps=steps, resume=resumable(run_dir / "checkpoints"), overwrite=True, overrides=overrides))

    for r in runs(cfg):
        run_dir = out / "runs" / r.key
        train_stage(r)
        stages.run(f"offline_{r.eval_key}", partial(
            evaluate_offline, run=run_dir, data=data, split="sp_test", out=out / "offline" / r.eval_key,
            progress=False, decode=r.decode, constrained=r.constrained or None))
        stages.run(f"closed_loop_{r.eval_key}", partial(
            evaluate_closed_loop, run=run_dir, clearances=[cfg.clearance], shapes=[cfg.shape], episodes=cfg.episodes,
            out=out / "closed_loop" / r.eval_key, seed=0, workers=cfg.workers, data=data, progress=False,
            decode=r.decode, constrained=r.constrained or None))
        if cfg.ood_shapes:  # the same run on what it never saw: unseen shapes, offline and in closed loop
            stages.run(f"offline_ood_{r.eval_key}", partial(
                evaluate_offline, run=run_dir, data=data, split="mp_test_ood", out=out / "offline_ood" / r.eval_key,
                progress=False, decode=r.decode, constrained=r.constrained or None))
            for shape in cfg.ood_shapes:  # one stage per shape: the selection of shapes may grow
                stages.run(f"closed_loop_ood_{shape}_{r.eval_key}", partial(
                    evaluate_closed_loop, run=run_dir, clearances=[cfg.ood_clearance], shapes=[shape],
                    episodes=cfg.episodes, out=out / "closed_loop_ood" / shape / r.eval_key, seed=0,
                    workers=cfg.workers, data=data, progress=False, decode=r.decode,
                    constrained=r.constrained or None))
    return _finish(out, cfg)


def _finish(out: Path, cfg: AblationConfig, partial_ok: bool = False) -> dict:
    results = collect(out, cfg, partial_ok)
    (out / "results.json").write_text(strict_dumps(results, indent=2))
    write_report(out, results)
    return results


OOD_METRICS = ("direction_x", "direction_y", "direction_rz", "gcr")


def ood_scores(out: Path, key: str, cfg: AblationConfig) -> dict:
    """The out-of-distribution scores of one run ({} when the ablation has none): offline on mp_test_ood and
    closed-loop success per unseen shape."""
    if not cfg.ood_shapes:
        return {}
    m = json.loads((out / "offline_ood" / key / "metrics.json").read_text())
    success = {s: json.loads((out / "closed_loop_ood" / s / key / "summary.json").read_text())[0]["success"]
               for s in cfg.ood_shapes}
    return {**{f"ood_{k}": _clean(m[k]) for k in OOD_METRICS}, **{f"ood_success_{s}": v for s, v in success.items()}}


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def collect(out: Path, cfg: AblationConfig, partial_ok: bool = False) -> dict:
    rows: dict[str, dict] = {}
    for run in runs(cfg):
        key, name, seed = run.eval_key, run.row, run.seed
        last = [f"closed_loop_{key}", *(f"closed_loop_ood_{shape}_{key}" for shape in cfg.ood_shapes)]
        finished = all((out / "stages" / f"{name}.json").exists() for name in last)
        if partial_ok and not finished:
            continue
        m = json.loads((out / "offline" / key / "metrics.json").read_text())
        cl = json.loads((out / "closed_loop" / key / "summary.json").read_text())[0]
        r = rows.setdefault(name, {"seeds": [], "runs": []})
        r["seeds"].append(seed)
        stage = json.loads((out / "stages" / f"train_{run.key}.json").read_text())
        r["runs"].append({"run": key, "train_run": run.key, "seed": seed, "reused_from": stage.get("reused_from"),
                          "decode": run.decode, "constrained": run.constrained,
                          "parse_failure_rate": _clean(m.get("parse_failure_rate")),
                          **{k: _clean(m[k]) for k in METRICS},
                          "collapsed": m["collapse"]["collapsed"], "distinct_answers": m["collapse"]["distinct_answers"],
                          "success": cl["success"], "mean_steps": _clean(cl["mean_steps"]),
                          **ood_scores(out, key, cfg)})
    ood_keys = ([f"ood_{k}" for k in OOD_METRICS] + [f"ood_success_{s}" for s in cfg.ood_shapes]
                if cfg.ood_shapes else [])
    for r in rows.values():
        for k in (*METRICS, "success", "mean_steps", *ood_keys):
            r[k] = seed_stats(x[k] for x in r["runs"])
        r["collapsed_runs"] = sum(x["collapsed"] for x in r["runs"])
    return {"config": asdict(cfg), "hardware": hardware(), "stage_seconds": Stages(out).seconds(),
            "metadata": json.loads((out / "ablation.json").read_text()), "rows": rows}


def seed_stats(values) -> dict:
    """Mean, sample std, min and max over seeds of one metric (None values, e.g. no success, left out)."""
    vals = np.array([v for v in values if v is not None], dtype=float)
    return {"mean": float(vals.mean()) if len(vals) else None,
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else None,
            "min": float(vals.min()) if len(vals) else None, "max": float(vals.max()) if len(vals) else None}


def stat_cell(s: dict, pct: bool) -> str:
    """A report cell of `seed_stats`: mean ± std [min-max] (percent), or mean ± std."""
    if s["mean"] is None:
        return "n/a"
    f = 100 if pct else 1
    spread = "" if s["std"] is None else f" ± {f * s['std']:.1f}" if pct else f" ± {s['std']:.3f}"
    mean = f"{f * s['mean']:.1f}" if pct else f"{s['mean']:.3f}"
    rng = f" [{f * s['min']:.1f}-{f * s['max']:.1f}]" if pct else ""
    return mean + spread + rng


def write_report(out: Path, res: dict) -> Path:
    cfg = res["config"]
    meta = res["metadata"]
    lines = [
        "# TLA ablation — single peg, tiny preset",
        "",
        f"SP-TLA on `sp_train` of the `{cfg['data_preset']}` dataset, {cfg['tla_steps']} optimizer steps; BC "
        f"{cfg['bc_steps']} steps on the same data. Seeds {', '.join(map(str, cfg['seeds']))} (model "
        "initialisation and data order). Offline metrics on `sp_test`; closed loop on the "
        f"{cfg['shape']} peg at {cfg['clearance']} mm, {cfg['episodes']} episodes per run (the same episode list "
        "for every run). Cells: mean ± sample std over seeds [min-max].",
        f"Hardware: {describe_hardware(res['hardware'])}. Code commit: {meta.get('git_commit')}.",
        "",
        "Rows: `paper input (rgb)` is the paper's recipe (raw camera frames tiled 3x3, no position table). "
        "The departures: `marker flow` (the `marker_flow` modality: the tracked marker displacement on a 12 x 16 "
        "grid per frame, rendered as images, instead of the camera frames), `position table` (a learned "
        "absolute 2D position per vision patch), and for rgb `demarker + contrast` (frames area-downsampled 4x "
        "and back, which erases the markers; the sample's mean brightness removed and the rest stretched 3x), "
        "and `mean of beams` (the action is the probability-weighted mean of the beams' actions, not the top "
        "beam's; evaluation only: the same trained runs as the row without it). Rows without it act on the "
        "top beam, as the paper does. `contact reasoning`: the target text states the contact the simulator "
        "reports (rim side, the pad pressing harder, the twist) before the action; `constrained decoding`: beam "
        "search restricted to answers of the grammar (evaluation only), so no answer can fail to parse. "
        "`signed answer`: a '+' before every positive number of the target text, so each axis's direction is "
        "one token; `action aux loss`: while training, a linear head on the language model's state before "
        "the answer regresses the action, its smooth L1 loss weighted 0.3 and added to the text's (dropped "
        "when saved: the policy acts on its text alone). "
        "`(tiny preset)` marks what `make demo` trains. Nothing was tuned on "
        "sp_test (the decoding and the auxiliary weight were chosen on the validation episodes of sp_train).",
        *([] if not cfg.get("base") else [
            "",
            f"`pretrained base`: the tiny Qwen2-VL that `tla pretrain` trained on the tactile-language corpus "
            f"(`{cfg['base']}`: questions about the touch of peg shapes and clearances no evaluation uses), "
            "fine-tuned on the same data with the paper's recipe (`LoRA`: rank-16 adapters on the language "
            "model's linear layers, vision tower and merger frozen) or with every weight trained (`full "
            "fine-tuning`); its tokenizer is the base's. `frames layout (from scratch)` is the same input "
            "(marker flow, the 8 frames as labelled 56 px images, no position table: what the base reads) and "
            "model trained from random initialisation. None of these rows has the position table (a stock "
            "Qwen2-VL has none)."]),
        *([] if not any("layout=pairs" in VARIANTS[n].overrides for n in res["rows"] if n in VARIANTS) else [
            "",
            "`pairs layout`: the tiny preset's input and model, its 8 frames given as one video of 56 px frames "
            "with the pads interleaved (left t0, right t0, ..., right t3; each right frame mirrored left-right), "
            "so each vision token holds both pads at one instant and one position along the peg; the tiny preset "
            "tiles them in one 168 px composite."]),
        *([] if not any(VARIANTS[n].tunes for n in res["rows"] if n in VARIANTS) else [
            "",
            "`DPO`: the run of the row it tunes (same seed), preference-tuned by `tla dpo` (VTLA's stage after "
            "fine-tuning): for samples of its own training episodes the run's best beams are ranked by the L1 "
            "distance of their action to the label, the closest is `chosen`, the farthest `rejected`, and the "
            "model is trained with the DPO loss against its fine-tuned self as the reference. Settings: "
            f"{_dpo_settings(res)} (each run's config.json records every value)."]),
        "",
        "| model | seeds | direction x % | direction y % | direction rz % | GCR % | L1 x / y / rz (all) | "
        f"closed loop {cfg['clearance']} mm success % | mean steps | collapsed runs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["rows"].items():
        l1 = " / ".join(f"{r[k]['mean']:.3f}" if r[k]["mean"] is not None else "n/a"
                        for k in ("l1_x_all", "l1_y_all", "l1_rz_all"))
        coll = f"**{r['collapsed_runs']} of {len(r['runs'])}**" if r["collapsed_runs"] else f"0 of {len(r['runs'])}"
        steps = "n/a" if r["mean_steps"]["mean"] is None else f"{r['mean_steps']['mean']:.2f}"
        lines.append(f"| {name} | {', '.join(map(str, r['seeds']))} | {stat_cell(r['direction_x'], True)} | {stat_cell(r['direction_y'], True)} | "
                     f"{stat_cell(r['direction_rz'], True)} | {stat_cell(r['gcr'], True)} | {l1} | "
                     f"{stat_cell(r['success'], True)} | {steps} | {coll} |")
    shapes = cfg.get("ood_shapes") or ()
    if shapes:
        lines += ["", f"## Out of distribution: unseen peg shapes ({', '.join(shapes)})", "",
                  "The same runs, offline on `mp_test_ood` (shapes no single-peg run trained on) and in closed loop "
                  f"on each unseen shape at {cfg['ood_clearance']} mm, {cfg['episodes']} episodes (Table IV).", "",
                  "| model | seeds | direction x % | direction y % | direction rz % | GCR % | "
                  + " | ".join(f"{s} {cfg['ood_clearance']} mm success %" for s in shapes) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(shapes)]
        for name, r in res["rows"].items():
            cells = [stat_cell(r[f"ood_{k}"], True) for k in OOD_METRICS] + [stat_cell(r[f"ood_success_{s}"], True)
                                                                         for s in shapes]
            lines.append(f"| {name} | {', '.join(map(str, r['seeds']))} | {' | '.join(cells)} |")
    lines += ["", "## Per run", "", "| run | seed | direction x / y / rz % | GCR % | parse failures % | "
              "success % | collapsed |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"].values():
        for x in r["runs"]:
            d = " / ".join(f"{100 * x[k]:.1f}" for k in ("direction_x", "direction_y", "direction_rz"))
            run = x["run"] + (f" (the identical run of {x['reused_from']}, not retrained)" if x.get("reused_from") else "")
            parse = "n/a" if x.get("parse_failure_rate") is None else f"{100 * x['parse_failure_rate']:.1f}"
            lines.append(f"| {run} | {x['seed']} | {d} | {100 * x['gcr']:.1f} | {parse} | {100 * x['success']:.0f} | "
                         f"{'**yes**' if x['collapsed'] else 'no'} |")
    plot = plot_ablation(res, out / "ablation.png")
    lines += ["", f"![direction accuracy by variant]({plot.name})", "", "## Wall time per stage", "",
              "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in res["stage_seconds"].items()]
    lines += ["", f"Total: {sum(res['stage_seconds'].values()) / 60:.1f} min. Raw numbers: `results.json`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _dpo_settings(res: dict) -> str:
    """The settings of the preference rows of the report: `tla dpo`'s defaults, then each row's own."""
    from tla.train.dpo import DPO_TRAIN_DEFAULTS, DPOConfig

    defaults = [f"dpo.{k}={v}" for k, v in asdict(DPOConfig()).items()] + [f"train.{o}" for o in DPO_TRAIN_DEFAULTS]
    own = [f"{n}: `{' '.join(VARIANTS[n].overrides)}`" for n in res["rows"]
           if n in VARIANTS and VARIANTS[n].tunes and VARIANTS[n].overrides]
    return f"`{' '.join(defaults)}`" + (f"; overridden in {'; '.join(own)}" if own else "")


def plot_ablation(res: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["rows"])
    keys = ("direction_x", "direction_y", "direction_rz", "gcr", "success")
    labels = ("dir x", "dir y", "dir rz", "GCR", f"success {res['config']['clearance']} mm")
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        r = res["rows"][name]
        means = [100 * (r[k]["mean"] or 0) for k in keys]
        errs = [100 * (r[k]["std"] or 0) for k in keys]
        xs = np.arange(len(keys)) + (i - (len(names) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=name)
        for x_run in r["runs"]:  # every seed as a dot: the spread is visible, not only its summary
            ax.scatter(xs, [100 * (x_run[k] or 0) for k in keys], s=6, color="k", zorder=3)
    ax.set_xticks(np.arange(len(keys)), labels)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("SP-TLA input ablation (mean ± std over seeds; dots = single seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
