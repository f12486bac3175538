"""The control for the pretraining ablation's LoRA row: the paper's fine-tuning recipe (LoRA on the language
model; embeddings, head, vision tower and merger frozen) on an UNTRAINED base, the `tla pretrain` tiny model at
its initial weights (the same architecture, tokenizer and model.seed, before any training step).

The pretraining ablation found the LoRA row on the pretrained base failing in distribution (it cannot fit the
action text) yet inserting the unseen round peg in 99% of episodes. This separates the two explanations:
what pretraining taught the frozen base, or a side effect of a model that fits the action text poorly.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/untrained_base.py --data DATA --out OUT --seed 0
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/untrained_base.py --data DATA --out OUT --seed 1   # at once
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/untrained_base.py --out OUT --summary --seeds 0,1 \
        --compare docs/results/pretrain-ablation-tiny/results.json

Each seed is its own `tla ablate` folder (OUT/ablation_s{seed}; two seeds train at once on 2 cores) with the
two LoRA rows (top beam, mean of beams) on OUT/model, scored as the pretraining ablation scores its rows
(sp_test, the square peg at 1.0 mm, mp_test_ood, the round and hexagon pegs at 2.0 mm, 50 episodes); those
folders' own reports name the rows "pretrained base", as `tla ablate` does for any --base. `--summary` writes
OUT/untrained_base.json and OUT/report.md: the rows on the untrained base beside the same rows of the
committed pretraining ablation (--compare). DATA: the tiny dataset (`tla data build --preset tiny`, seed 0).
~33 min for two seeds run as two jobs at once on 2 cores (a 2-core AMD EPYC).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LORA_ROWS = ("SP-TLA pretrained base + LoRA (paper recipe)", "SP-TLA pretrained base + LoRA + mean of beams")
OOD_SHAPES = ("round", "hexagon")
SHOWN = ("direction_x", "direction_y", "direction_rz", "gcr", "success", "mean_steps", "ood_direction_x",
         "ood_direction_y", "ood_direction_rz", "ood_gcr", "ood_success_round", "ood_success_hexagon")


def write_untrained_base(out: Path) -> Path:
    """The `tla pretrain` tiny preset's model and tokenizer, untrained, exported as `tla pretrain` exports."""
    from tla.config import to_dict
    from tla.pretrain.corpus import describe
    from tla.pretrain.model import export_checkpoint, input_settings
    from tla.pretrain.run import new_policy, pretrain_config

    if (out / "config.json").exists():
        return out
    cfg = pretrain_config("tiny")
    policy = new_policy(cfg)
    info = {"input": input_settings(policy), "tla": to_dict(cfg.tla), "corpus": describe(cfg.corpus),
            "train": None, "train_samples": 0,
            "untrained": f"the tla pretrain tiny model at its initial weights (tla.model.seed={cfg.tla.model.seed})"}
    return export_checkpoint(policy, out, info)


def run_seed(data: Path, out: Path, seed: int, workers: int) -> dict:
    from tla.experiments.ablation import AblationConfig, ablate

    cfg = AblationConfig(seeds=(seed,), variants=LORA_ROWS, base=str(out / "model"), ood_shapes=OOD_SHAPES,
                         workers=workers)
    return ablate(cfg, out / f"ablation_s{seed}", data=data)


def summary(out: Path, seeds: list[int], compare: Path) -> dict:
    runs = {row: [] for row in LORA_ROWS}
    for seed in seeds:
        res = json.loads((out / f"ablation_s{seed}" / "results.json").read_text())
        for row in LORA_ROWS:
            runs[row] += [r for r in res["rows"][row]["runs"] if r["seed"] == seed]
    theirs = json.loads(compare.read_text())["rows"]

    from tla.experiments.ablation import seed_stats

    def stats(rs: list[dict]) -> dict:
        cells = {k: seed_stats(r.get(k) for r in rs) for k in SHOWN}
        return {"seeds": [r["seed"] for r in rs], "collapsed_runs": sum(bool(r["collapsed"]) for r in rs),
                "distinct_answers": [r["distinct_answers"] for r in rs], **cells}

    rows = {}
    for row in LORA_ROWS:
        rows[row.replace("pretrained base", "untrained base")] = {**stats(runs[row]), "runs": runs[row]}
        rows[row] = stats([r for r in theirs[row]["runs"] if r["seed"] in seeds])
    for row in ("SP-TLA marker flow + frames layout (from scratch) + mean of beams", "BC marker flow (tiny preset)"):
        rows[row] = stats([r for r in theirs[row]["runs"] if r["seed"] in seeds])
    metadata = json.loads((out / f"ablation_s{seeds[0]}" / "results.json").read_text())["metadata"]
    result = {"seeds": seeds, "compare": str(compare), "rows": rows, "ablation_metadata": metadata,
              "untrained_base": json.loads((out / "model" / "tla_pretrain.json").read_text())["untrained"]}
    (out / "untrained_base.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(report(result))
    return result


def report(result: dict) -> str:
    from tla.experiments.ablation import stat_cell

    def pct(key: str) -> str:
        return stat_cell(r[key], True)

    intro = (f"Untrained base: {result['untrained_base']}. The other rows are the committed pretraining "
             f"ablation's runs of the same seeds ({result['compare']}). Seeds {', '.join(map(str, result['seeds']))}; "
             "mean ± sample std [min-max] over seeds. In distribution: sp_test and the square peg at 1.0 mm; out of "
             "distribution: mp_test_ood and the unseen round and hexagon pegs at 2.0 mm (50 episodes each).")
    header = ("| model | direction x / y / rz % | GCR % | 1.0 mm % (steps) | OOD direction x / y / rz %, GCR % | "
              "round / hexagon 2.0 mm % | collapsed runs (distinct answers) |")
    lines = ["# LoRA on an untrained base: the control for the pretraining ablation", "", intro, "", header,
             "|---|---|---|---|---|---|---|"]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {pct('direction_x')} / {pct('direction_y')} / {pct('direction_rz')} | {pct('gcr')} | "
            f"{pct('success')} ({stat_cell(r['mean_steps'], False)}) | {pct('ood_direction_x')} / "
            f"{pct('ood_direction_y')} / {pct('ood_direction_rz')}, {pct('ood_gcr')} | "
            f"{pct('ood_success_round')} / {pct('ood_success_hexagon')} | "
            f"{r['collapsed_runs']} ({', '.join(map(str, r['distinct_answers']))}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="the tiny dataset (seed 0)")
    ap.add_argument("--seed", type=int, help="train and score this seed's two LoRA rows")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="summarise finished seeds beside --compare")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--compare", type=Path, default=Path("docs/results/pretrain-ablation-tiny/results.json"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary:
        print(json.dumps(summary(args.out, [int(s) for s in args.seeds.split(",")], args.compare), indent=2))
        return
    if args.data is None or args.seed is None:
        ap.error("--data and --seed are needed to train (or pass --summary)")
    write_untrained_base(args.out / "model")
    run_seed(args.data, args.out, args.seed, args.workers)


if __name__ == "__main__":
    main()
