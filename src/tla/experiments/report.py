"""The reproduce report: every table with our numbers beside the paper's, and how they were made."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tla.eval.offline import LABEL_SIZES, SMALL_LABEL, GoalTolerance
from tla.experiments.tables import (
    MODELS,
    PAPER,
    PAPER_TABLE3_CLEARANCES,
    PAPER_TABLE4_SHAPES,
    ROBUSTNESS,
    TABLE3_CLEARANCES,
    TABLE4_SHAPES,
    VTLA_TABLE3,
)
from tla.runinfo import describe_hardware

GOAL = GoalTolerance()  # the offline goal region (one definition: tla.eval.offline.GoalTolerance)


def _missing(x) -> bool:
    return x is None or math.isnan(x)  # results.json stores NaN as null


def _pct(x: float | None) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.1f}"


def _num(x: float | None) -> str:
    return "n/a" if _missing(x) else f"{x:.3f}"


def _offline_row(name: str, m: dict, paper: tuple) -> str:
    ours = [_pct(m["gcr"]), _num(m["l1_x_gcr"]), _num(m["l1_y_gcr"]), _num(m["l1_rz_gcr"])]
    theirs = [f"{paper[0]:.1f}", *(f"{v:.3f}" for v in paper[1:])]
    cells = [f"{o} ({p})" for o, p in zip(ours, theirs)]
    extra = [f"{_num(m['l1_x_all'])} / {_num(m['l1_y_all'])} / {_num(m['l1_rz_all'])}",
             f"{_pct(m['direction_x'])} / {_pct(m['direction_y'])} / {_pct(m['direction_rz'])}",
             _pct(m["one_step_insertion"]), _pct(m["parse_failure_rate"]), _answers(m), str(m["samples"])]
    return "| " + " | ".join([name, *cells, *extra]) + " |"


def _answers(m: dict) -> str:
    """Distinct answers and the most common one's share; COLLAPSED when one answer covers >= 90%."""
    c = m.get("collapse")
    if c is None:
        return "n/a"
    cell = f"{c['distinct_answers']} ({_pct(c['modal_share'])}%)"
    return f"**COLLAPSED** {cell}" if c["collapsed"] else cell


def collapse_warnings(res: dict) -> list[str]:
    """One line per (model, test split) whose answers collapsed to (nearly) one action."""
    found = [(name, "sp_test", m) for name, m in res["table1"].items()]
    found += [(name, split, m) for name, splits in res["table2"].items() for split, m in splits.items()]
    return [f"- **{name} on {split}**: one action {c['modal_answer']} for {_pct(c['modal_share'])}% of "
            f"{c['samples']} samples ({c['distinct_answers']} distinct answers)"
            for name, split, m in found if (c := m.get("collapse")) and c["collapsed"]]


OFFLINE_HEADER = ("| model | GCR % | L1 x mm (GCR) | L1 y mm (GCR) | L1 rz deg (GCR) | L1 x/y/rz (all) | "
                  "direction x/y/rz % | one-step insert % | parse fail % | distinct answers (modal %) | samples |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|")


def label_size_section(table: dict[str, dict], split: str) -> list[str]:
    """Direction accuracy split by label size (`tla.eval.offline.direction_by_label_size`): where each model's
    direction errors lie. Empty for results written before the split existed."""
    rows = {name: m["direction_by_label_size"] for name, m in table.items() if m.get("direction_by_label_size")}
    if not rows:
        return []
    first = next(iter(rows.values()))
    cols = [f"{a}_{k}" for a in ("x", "y", "rz") for k in LABEL_SIZES if first[f"{a}_{k}"]["samples"]]
    header = " | ".join(f"{c.replace('_', ' ')} (n={first[c]['samples']})" for c in cols)
    intro = (f"Direction accuracy % by label size ({split}): zero = no move needed on the axis; small = "
             f"0 < |label| < {SMALL_LABEL} mm (deg for rz), the peg just outside the goal band; large = the rest. "
             "A model that answers exactly 0 where it is unsure is wrong on every small label; a regressor's "
             "near-zero output is counted by its sign.")
    return [intro, "",
            f"| model | {header} |", "|---|" + "---|" * len(cols),
            *(f"| {name} | " + " | ".join(_pct(d[c]["accuracy"]) for c in cols) + " |" for name, d in rows.items()),
            ""]


def _cl_cell(row: dict | None, paper: tuple | None) -> str:
    """Ours [CI] / steps, then the paper's (success / steps) in brackets, or (—) where the paper has no column."""
    if row is None:
        return "n/a"
    steps = "n/a" if _missing(row["mean_steps"]) else f"{row['mean_steps']:.2f}"
    theirs = "(—)" if paper is None else f"({paper[0]} / {paper[1]:.2f})"
    return f"{_pct(row['success'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}] / {steps} {theirs}"


def _paper(table: str, name: str, columns: tuple, key) -> tuple | None:
    """The paper's (success %, steps) of `name` in column `key`, or None for a column the paper lacks."""
    return PAPER[table][name][columns.index(key)] if key in columns else None


def _ours_cell(row: dict | None) -> str:
    """success % [Wilson 95% CI] / mean steps of the successful episodes (no paper number)."""
    if row is None:
        return "n/a"
    steps = "n/a" if _missing(row["mean_steps"]) else f"{row['mean_steps']:.2f}"
    return f"{_pct(row['success'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}] / {steps}"


def paper_attempts(proto: dict) -> int:
    """The paper's attempts per episode (older folders record only the attempts used: the paper's)."""
    return proto["paper"].get("paper_max_attempts", proto["paper"]["max_attempts"])


def protocol_lines(res: dict) -> list[str]:
    """How many episodes each closed-loop table ran, under which seeds and conditions."""
    p, proto = res["preset"], res.get("protocols")
    if not proto:
        return []
    rob, hard = proto["robustness"], proto["hard"]
    attempts, paper = proto["paper"]["max_attempts"], paper_attempts(proto)
    budget = f"up to {attempts} attempts each" + ("" if attempts == paper else f"; **the paper allows {paper}**")
    return [
        f"Closed-loop episodes (preset `{p['name']}`, seed {proto['seed']}): {proto['paper']['episodes']} per "
        f"condition in Tables III and IV and {rob['episodes']} per knob in the robustness table ({budget}), "
        f"{hard['episodes']} per clearance in the hard protocol. Episode seeds: "
        f"{proto['episode_seeds']} (seed {proto['seed']}: {', '.join(map(str, proto['first_seeds']))}, ...).",
        "",
    ]


def robustness_section(res: dict) -> list[str]:
    """The robustness table: each model under each knob, beside its nominal Table III cell and the oracle."""
    rob, proto = res.get("robustness"), res.get("protocols")
    if not rob or not proto:
        return []
    r = proto["robustness"]
    knobs = [k for k, *_ in ROBUSTNESS]
    lines = ["## Robustness — closed loop under one perturbation at a time", "",
             f"{r['shape']} peg, {r['clearance']} mm, {r['episodes']} episodes per knob (the same seeds for every "
             f"model and knob); *nominal* is the Table III cell ({proto['paper']['episodes']} episodes, no "
             "perturbation). Cells: success % [Wilson 95% CI] / mean steps. The oracle acts on the true error, so "
             "only actuation noise can change its row. Knobs (`SimConfig.perturb`, recorded in each "
             "`conditions.json`):", ""]
    lines += [f"- **{k}**: {v['label']} (`{' '.join(v['overrides'])}`)" for k, v in r["knobs"].items()]
    lines += ["", "| model | nominal | " + " | ".join(knobs) + " |", "|---|---|" + "---|" * len(knobs)]
    for name, rows in rob.items():
        by_k = {row.get("condition"): row for row in rows}
        nominal_rows = res.get("table3_oracle" if name == "oracle" else "table3", {})
        if name != "oracle":
            nominal_rows = nominal_rows.get(name, [])
        nominal = next((x for x in nominal_rows if x["shape"] == r["shape"] and x["clearance"] == r["clearance"]),
                       None)
        label = "oracle (true error -> label; same episodes)" if name == "oracle" else name
        lines.append(f"| {label} | {_ours_cell(nominal)} | " + " | ".join(_ours_cell(by_k.get(k)) for k in knobs)
                     + " |")
    return lines + [""]


def hard_section(res: dict) -> list[str]:
    """The hard protocol's table: fewer attempts, larger start errors, actuation noise."""
    hard, proto = res.get("hard"), res.get("protocols")
    if not hard or not proto:
        return []
    h = proto["hard"]
    ex, ey, erz = h["errors"]
    sx, sy, srz = h["action_std"]
    lines = ["## Hard protocol — closed loop, fewer attempts, larger errors, actuation noise", "",
             f"{h['shape']} peg; at most {h['max_attempts']} attempts (the paper's protocol: "
             f"{paper_attempts(proto)}); start errors uniform in +-{ex:g} mm, +-{ey:g} mm, +-{erz:g} deg "
             f"(what {h['max_attempts'] - 1} capped actions can undo); every executed action perturbed by "
             f"N(0, {sx:g} mm / {sy:g} mm / {srz:g} deg); {h['episodes']} episodes per clearance. Meant so that a policy that "
             "is merely right more often than not no longer reaches ~100%. Cells: success % [Wilson 95% CI] / mean steps.",
             "", "| model | " + " | ".join(f"{c} mm" for c in h["clearances"]) + " |",
             "|---|" + "---|" * len(h["clearances"])]
    for name, rows in hard.items():
        by_c = {row["clearance"]: row for row in rows}
        label = "oracle (true error -> label; same episodes)" if name == "oracle" else name
        lines.append(f"| {label} | " + " | ".join(_ours_cell(by_c.get(c)) for c in h["clearances"]) + " |")
    return lines + [""]


def _oracle_cell(row: dict | None) -> str:
    if row is None:
        return "n/a"
    steps = "n/a" if _missing(row["mean_steps"]) else f"{row['mean_steps']:.2f}"
    return f"{_pct(row['success'])} / {steps}"


def _pooled(rows: list[dict]) -> dict:
    """Total over conditions: pooled success and the mean steps of all successful episodes."""
    from tla.eval.metrics import wilson_interval

    n = sum(r["episodes"] for r in rows)
    wins = sum(round(r["success"] * r["episodes"]) for r in rows)
    steps = sum(r["mean_steps"] * round(r["success"] * r["episodes"]) for r in rows if r["success"] > 0
                and not _missing(r["mean_steps"]))
    lo, hi = wilson_interval(wins, n)
    return {"success": wins / n if n else float("nan"), "ci_low": lo, "ci_high": hi,
            "mean_steps": steps / wins if wins else float("nan"), "episodes": n}


def describe_input(inp: dict | None) -> str:
    """'marker_flow 224 px composite, position table' ...; departures from the paper's input in bold."""
    if not inp:
        return "n/a"
    parts = [inp["modality"] if inp["modality"] == "rgb" else f"**{inp['modality']}**"]
    if "composite_size" in inp:
        parts.append(f"{inp['composite_size']} px composite")
    if inp.get("layout") == "frames":
        parts.append(f"**8 labelled {inp['frame_size']} px frames**")
    if "image_size" in inp:
        parts.append("x".join(map(str, inp["image_size"])) + " px")
    if inp.get("preprocess"):
        parts.append("**" + " + ".join(inp["preprocess"]) + "**")
    if inp.get("position_table"):
        parts.append("**position table**")
    if inp.get("decode", "top") != "top":
        parts.append(f"**{inp['decode']} of beams**")
    if inp.get("answer", "action") == "contact_action":
        parts.append("**contact reasoning**")
    if inp.get("constrained"):
        parts.append("**constrained decoding**")
    return ", ".join(parts)


def _model_label(key: str) -> str:
    """A preset key as the report names it: bc -> BC, mp_tla -> MP-TLA."""
    return key.upper().replace("_", "-")


def budget_section(res: dict) -> list[str]:
    """Each model's training budget, why, and whether its validation curve had flattened."""
    budgets = res.get("budgets") or {}
    if not budgets:
        return []
    notes = res["preset"].get("budget_notes") or {}
    lines = ["## Inputs and training budgets", "",
             "Every model trains on the same split with its own budget. *Input* is what it reads, from its recorded "
             "config; **bold** marks a departure from the paper's input (raw rgb frames, no position table). "
             "*Last quarter* is the relative change of the validation loss over the last quarter of training: "
             "flat when it improved by less than 3%. *Starts from* is fresh weights (the paper: every run from its "
             "base model) or the trained run whose weights it fine-tunes (**bold**, a departure).", "",
             "| run | policy | input | starts from | steps | batch | epochs | lr | validation loss first -> last | last quarter |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, name, policy, split in MODELS:
        b = budgets.get(key)
        if b is None:
            continue
        p = b["plateau"]
        curve = "n/a" if p is None else f"{p['first']:.4g} -> {p['last']:.4g}"
        flat = "n/a" if p is None else f"{100 * p['change']:+.1f}% ({'flat' if p['flat'] else '**still improving**'})"
        start = f"**{b['init_from']}**" if b.get("init_from") else "fresh"
        lines.append(f"| {key} ({split}) | {name} | {describe_input(b.get('input'))} | {start} | {b['steps']} | {b['batch_size']} | {b['epochs']:.1f} | "
                     f"{b['lr']:g} | {curve} | {flat} |")
    if notes:
        lines += ["", *[f"- **{_model_label(k)}**: {v}" for k, v in notes.items()]]
    return lines


def write_report(out: Path, res: dict) -> Path:
    p = res["preset"]
    meta = res["metadata"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    steps = p["max_steps"]
    if isinstance(steps, dict):
        steps = ", optimizer steps per model: " + ", ".join(f"{_model_label(k)} {v}" for k, v in steps.items())
    else:
        steps = "" if steps is None else f", {steps} optimizer steps per model"
    lines = [
        f"# TLA reproduction report — preset `{p['name']}`",
        "",
        f"Preset `{p['name']}`: dataset preset `{p['data_preset']}`, training preset `{p['train_preset']}`"
        f"{steps}, {p['episodes']} closed-loop episodes per condition, seed {p['seed']}.",
        f"Hardware: {describe_hardware(res['hardware'])}. Versions: {versions}. Code commit: {meta.get('git_commit')}.",
        "",
        *protocol_lines(res),
        "Each cell shows **ours (paper)**. The paper's numbers come from Qwen2-VL-7B fine-tuned on Isaac Gym "
        "data and real-robot trials; ours come from this repository's analytic simulator and the preset "
        "above. Only the `paper` preset (Qwen2-VL-7B, full dataset, GPU) is the like-for-like comparison; "
        "`tiny` and `smoke` use a random-initialised tiny Qwen2-VL architecture and small ResNet/U-Net "
        "baselines, so they show that the pipeline works end to end, not what TLA can reach. Nothing was "
        "tuned on a test split.",
        "",
        f"GCR tolerance: eta = {GOAL.eta} mm beyond c/2, eta_rz = {GOAL.eta_rz} deg. L1 (GCR) is over the samples "
        "that reach "
        "the goal region, as in the paper; L1 (all) over every sample. Closed-loop cells: success % "
        "[Wilson 95% CI] / mean steps of successful episodes.",
        "",
    ]
    warnings = collapse_warnings(res)
    if warnings:
        lines += ["## WARNING: collapsed models", "",
                  "These models give (nearly) the same action whatever the touch: their closed-loop successes "
                  "are what a fixed action achieves, not evidence that they read the sensor.", "", *warnings, ""]
    lines += [
        "## Table I — single-peg offline (sp_test)",
        "",
        OFFLINE_HEADER,
    ]
    for name, m in res["table1"].items():
        lines.append(_offline_row(name, m, PAPER["table1"][name]))
    by_size = label_size_section(res["table1"], "sp_test")
    lines += ["", *by_size] if by_size else []
    kinds = ("in-distribution: square, triangle", "out-of-distribution: round, hexagon")
    for k, split in enumerate(("mp_test_id", "mp_test_ood")):
        lines += ["", f"## Table II — multi-peg offline ({kinds[k]}; {split})", "", OFFLINE_HEADER]
        for name, splits in res["table2"].items():
            lines.append(_offline_row(name, splits[split], PAPER["table2"][name][k]))
    lines += ["", *budget_section(res)]
    paper_c = PAPER_TABLE3_CLEARANCES
    lines += ["", "## Table III — closed loop, square peg, by clearance", "",
              f"The paper has no {', '.join(f'{c} mm' for c in TABLE3_CLEARANCES if c not in paper_c)} column "
              "(—). *Total* pools the paper's clearances "
              f"({' / '.join(f'{c}' for c in paper_c)} mm), as the paper's total does. The VTLA row is a literature "
              "reference (VTLA's reported success %, not the TLA paper's and not ours).", "",
              "| model | " + " | ".join(f"{c} mm" for c in TABLE3_CLEARANCES) + " | total |",
              "|---|" + "---|" * (len(TABLE3_CLEARANCES) + 1)]
    for name, rows in res["table3"].items():
        by_c = {r["clearance"]: r for r in rows}
        cells = [_cl_cell(by_c.get(c), _paper("table3", name, paper_c, c)) for c in TABLE3_CLEARANCES]
        cells.append(_cl_cell(_pooled([r for r in rows if r["clearance"] in paper_c]), PAPER["table3"][name][-1]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if res.get("table3_oracle"):
        rows = res["table3_oracle"]
        by_c = {r["clearance"]: r for r in rows}
        cells = [_oracle_cell(by_c.get(c)) for c in TABLE3_CLEARANCES]
        cells.append(_oracle_cell(_pooled([r for r in rows if r["clearance"] in paper_c])))
        lines.append("| oracle (true error -> label; same episodes) | " + " | ".join(cells) + " |")
    lines.append("| VTLA (literature reference, its reported success %; not ours) | " + " | ".join(
        f"({VTLA_TABLE3[c]})" if c in VTLA_TABLE3 else "—" for c in TABLE3_CLEARANCES) + " | — |")
    unseen = [s for s in TABLE4_SHAPES if s not in ("square", "triangle")]
    lines += ["", f"## Table IV — closed loop, 2.0 mm, by shape ({', '.join(unseen)} unseen in training)", "",
              "The paper has no pentagon column (—).", "",
              "| model | " + " | ".join(TABLE4_SHAPES) + " |", "|---|" + "---|" * len(TABLE4_SHAPES)]
    for name, rows in res["table4"].items():
        by_s = {r["shape"]: r for r in rows}
        lines.append(f"| {name} | " + " | ".join(
            _cl_cell(by_s.get(s), _paper("table4", name, PAPER_TABLE4_SHAPES, s)) for s in TABLE4_SHAPES) + " |")
    if res.get("table4_oracle"):
        by_s = {r["shape"]: r for r in res["table4_oracle"]}
        lines.append("| oracle (true error -> label; same episodes) | " + " | ".join(
            _oracle_cell(by_s.get(s)) for s in TABLE4_SHAPES) + " |")
    lines += ["", *robustness_section(res), *hard_section(res)]
    lines += ["## Figure 4 — predicted actions from each test sample's pose error", ""]
    for fig in sorted((out / "offline").glob("*/*/fig4.png")):
        rel = fig.relative_to(out)
        lines.append(f"**{rel.parts[1]} on {rel.parts[2]}**\n\n![{rel}]({rel})\n")
    lines += ["## Closed-loop trajectories (x-y plane; green = success)", ""]
    for fig in sorted((out / "closed_loop").glob("*/*/trajectories.png")):
        rel = fig.relative_to(out)
        lines.append(f"**{rel.parts[1]}, {rel.parts[2]}**\n\n![{rel}]({rel})\n")
    lines += ["## Training curves (loss per step; validation loss and L1 on the held-out episodes)", ""]
    for fig in sorted((out / "runs").glob("*/train_curves.png")):
        rel = fig.relative_to(out)
        lines.append(f"**{rel.parts[1]}**\n\n![{rel}]({rel})\n")
    lines += ["## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in res["stage_seconds"].items()]
    lines += ["", f"Total: {sum(res['stage_seconds'].values()) / 60:.1f} min. Raw numbers: `results.json`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":  # re-render a report from results.json
    import sys

    d = Path(sys.argv[1])
    write_report(d, json.loads((d / "results.json").read_text()))
