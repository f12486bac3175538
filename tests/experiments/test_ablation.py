"""`tla ablate` on smoke data: every variant x seed trains, is scored and lands in the report with its
spread; a rerun resumes; another configuration in the same folder is refused."""

import dataclasses
import json

import pytest

from tla.experiments.ablation import (
    ANSWER_VARIANTS,
    DEFAULT_VARIANTS,
    DPO_VARIANTS,
    LAYOUT_VARIANTS,
    PAPER_INPUT,
    PRETRAIN_VARIANTS,
    TARGET_VARIANTS,
    TINY_PRESET,
    VARIANTS,
    AblationConfig,
    ablate,
    runs,
)


def test_variants_go_from_the_paper_input_to_the_tiny_preset():
    from tla.policies.bc.config import BCConfig
    from tla.policies.registry import build_policy
    from tla.policies.tla.config import tla_preset

    paper = tla_preset("tiny", list(PAPER_INPUT))
    assert paper.modality == "rgb" and paper.preprocess.identity and not paper.model.position_table
    # the rows marked "tiny preset" are exactly the presets (overrides name every input setting)
    policy, _, ov, decode, constrained, tunes = VARIANTS[TINY_PRESET["tla"]]
    assert policy == "tla" and tla_preset("tiny", list(ov)) == tla_preset("tiny")
    assert decode == tla_preset("tiny").generate.decode == "mean"  # the decoding is the preset's, too
    assert constrained is tla_preset("tiny").generate.constrained is False and tunes is None
    assert VARIANTS["SP-TLA paper input (rgb)"][3] == "top"  # the paper acts on the top beam
    policy, _, ov, *_ = VARIANTS[TINY_PRESET["bc"]]
    assert policy == "bc" and build_policy("bc", "tiny", list(ov)).config == BCConfig.preset_config("tiny")
    all_runs = runs(AblationConfig(seeds=(0, 1)))
    evals = [r.eval_key for r in all_runs]
    assert len(evals) == len(set(evals)) == 2 * len(DEFAULT_VARIANTS)
    assert "tla_paper_input_s0" in evals and "bc_s1" in evals  # the run folders of earlier versions stay valid
    # a decoding row trains nothing of its own: it shares the run of its stem, with the same overrides
    by_eval = {r.eval_key: r for r in all_runs}
    top, mean = by_eval["tla_flow_table_s1"], by_eval["tla_flow_table_mean_s1"]
    assert top.key == mean.key == "tla_flow_table_s1" and top.overrides == mean.overrides
    assert len({r.key for r in all_runs}) == 2 * (len(DEFAULT_VARIANTS) - 2)
    # so does a constrained-decoding row; contact reasoning trains its own run (another target text)
    answers = {r.row: r for r in runs(AblationConfig(seeds=(1,), variants=ANSWER_VARIANTS))}
    constrained_row = answers["SP-TLA tiny preset + constrained decoding"]
    assert constrained_row.key == "tla_flow_table_s1" and constrained_row.constrained
    assert constrained_row.eval_key == "tla_flow_table_mean_constrained_s1"
    contact = answers["SP-TLA tiny preset + contact reasoning"]
    assert contact.key == "tla_flow_table_contact_s1" and "answer=contact_action" in contact.overrides
    policy_overrides = [o for o in contact.overrides if not o.startswith("train.")]
    assert tla_preset("tiny", policy_overrides).answer == "contact_action"  # a valid config
    # the training-target rows each train their own run: the preset plus one or both options
    targets = {r.row: r for r in runs(AblationConfig(seeds=(2,), variants=TARGET_VARIANTS))}
    cfgs = {row: tla_preset("tiny", [o for o in r.overrides if not o.startswith("train.")])
            for row, r in targets.items() if r.policy == "tla"}
    options = {row: (c.signed_answer, c.action_aux_weight) for row, c in cfgs.items()}
    assert options == {TINY_PRESET["tla"]: (False, 0.0), "SP-TLA tiny preset + signed answer": (True, 0.0),
                       "SP-TLA tiny preset + action aux loss": (False, 0.3),
                       "SP-TLA tiny preset + signed answer + action aux loss": (True, 0.3)}
    for c in cfgs.values():  # otherwise the tiny preset
        assert dataclasses.replace(c, signed_answer=False, action_aux_weight=0.0) == tla_preset("tiny", ["model.seed=2"])
    assert len({r.key for r in targets.values()}) == len(TARGET_VARIANTS)
    # the layout row is the tiny preset read through the pairs layout, its own run
    layouts = {r.row: r for r in runs(AblationConfig(seeds=(2,), variants=LAYOUT_VARIANTS))}
    pairs = layouts["SP-TLA tiny preset + pairs layout"]
    cfg = tla_preset("tiny", [o for o in pairs.overrides if not o.startswith("train.")])
    assert (cfg.layout, cfg.frame_size, pairs.decode) == ("pairs", 56, "mean")
    assert dataclasses.replace(cfg, layout="composite") == tla_preset("tiny", ["model.seed=2"])
    assert pairs.key == "tla_flow_table_pairs_s2" != layouts[TINY_PRESET["tla"]].key


def test_pretrained_base_rows_fine_tune_the_given_base_with_the_papers_recipe(tmp_path):
    from tla.policies.tla.config import tla_preset

    with pytest.raises(ValueError, match="pass --base OUT/model"):
        runs(AblationConfig(seeds=(0,), variants=PRETRAIN_VARIANTS))
    by_row = {r.row: r for r in runs(AblationConfig(seeds=(2,), variants=PRETRAIN_VARIANTS, base=str(tmp_path)))}
    lora, full = by_row["SP-TLA pretrained base + LoRA (paper recipe)"], by_row["SP-TLA pretrained base + full fine-tuning"]
    scratch = by_row["SP-TLA marker flow + frames layout (from scratch)"]
    assert (lora.key, full.key, scratch.key) == ("tla_base_lora_s2", "tla_base_full_s2", "tla_flow_frames_s2")
    assert by_row["SP-TLA pretrained base + LoRA + mean of beams"].key == lora.key  # evaluation-only row
    cfgs = {name: tla_preset("tiny", [o for o in r.overrides if not o.startswith("train.")])
            for name, r in (("lora", lora), ("full", full), ("scratch", scratch))}
    assert cfgs["lora"].model.preset == "pretrained" and cfgs["lora"].model.train_mode == "lora"
    assert cfgs["lora"].model.path == str(tmp_path.resolve()) and cfgs["lora"].model.freeze_vision
    assert cfgs["full"].model.train_mode == "full" and cfgs["scratch"].model.preset == "tiny"
    # one input for the three, the base's: marker flow, 8 labelled 56 px frames, no position table
    for c in cfgs.values():
        assert (c.modality, c.layout, c.frame_size, c.model.position_table) == ("marker_flow", "frames", 56, False)


@pytest.mark.slow
def test_ablation_on_smoke_data_reports_every_seed_and_resumes(tmp_path):
    cfg = AblationConfig(data_preset="smoke", seeds=(0, 1), variants=(
                             "SP-TLA paper input (rgb)", "SP-TLA paper input + mean of beams", TINY_PRESET["tla"], "BC rgb"),
                         tla_steps=3, bc_steps=3, episodes=2, clearance=2.0,
                         train_overrides=["train.batch_size=4", "train.val_fraction=0.1"])
    out = tmp_path / "abl"
    res = ablate(cfg, out)
    assert set(res["rows"]) == {"SP-TLA paper input (rgb)", "SP-TLA paper input + mean of beams", TINY_PRESET["tla"],
                                "BC rgb"}
    # the mean-of-beams row is the same trained run, evaluated by the other decoding (and recorded so)
    assert not (out / "runs" / "tla_paper_input_mean_s0").exists()
    assert not (out / "stages" / "train_tla_paper_input_mean_s0.json").exists()
    for key, decode in (("tla_paper_input_s0", "top"), ("tla_paper_input_mean_s0", "mean")):
        assert json.loads((out / "offline" / key / "metrics.json").read_text())["decode"] == decode
        assert json.loads((out / "closed_loop" / key / "run.json").read_text())["config"]["decode"] == decode
    for row in res["rows"].values():
        assert row["seeds"] == [0, 1]
        d = row["direction_x"]
        assert d["min"] <= d["mean"] <= d["max"] and d["std"] is not None
    # the two seeds really are different runs
    seeds = res["rows"][TINY_PRESET["tla"]]["runs"]
    cfg0, cfg1 = (json.loads((out / "runs" / r["train_run"] / "config.json").read_text()) for r in seeds)
    assert cfg0["policy_config"]["model"]["seed"] == 0 and cfg1["policy_config"]["model"]["seed"] == 1
    assert cfg0["train"]["seed"] == 0 and cfg1["train"]["seed"] == 1
    report = (out / "report.md").read_text()
    assert "SP-TLA paper input (rgb)" in report and "± " in report and (out / "ablation.png").exists()
    assert "NaN" not in (out / "results.json").read_text()
    stamps = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    ablate(cfg, out)  # resumes: every stage is skipped
    assert {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")} == stamps
    with pytest.raises(ValueError, match="episodes"):
        ablate(AblationConfig(**{**cfg.__dict__, "episodes": 3}), out)
    # report_only with a run missing: the finished ones are reported, each row with its seeds
    import shutil

    shutil.rmtree(out / "offline" / "bc_s1")
    (out / "stages" / "closed_loop_bc_s1.json").unlink()
    part = ablate(cfg, out, report_only=True)
    assert part["rows"]["BC rgb"]["seeds"] == [0] and part["rows"]["SP-TLA paper input (rgb)"]["seeds"] == [0, 1]
    assert "| BC rgb | 0 |" in (out / "report.md").read_text()
    (out / "stages" / "offline_bc_s1.json").unlink()
    ablate(cfg, out)  # the missing evaluation is redone, nothing is retrained
    stamps = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    # fewer seeds (a selection, not a setting) reuse the finished runs and report only those
    one = ablate(AblationConfig(**{**cfg.__dict__, "seeds": (1,)}), out)
    assert one["rows"]["BC rgb"]["seeds"] == [1] and one["rows"]["BC rgb"]["direction_x"]["std"] is None
    assert {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")} == stamps


@pytest.mark.slow
def test_the_answer_rows_train_contact_reasoning_and_decode_within_the_grammar(tmp_path, smoke_ds):
    row = "SP-TLA tiny preset + contact reasoning + constrained decoding"
    cfg = AblationConfig(data_preset="smoke", seeds=(0,), variants=(row,), tla_steps=3, bc_steps=3, episodes=1,
                         clearance=2.0, train_overrides=["train.batch_size=4", "train.val_fraction=0.1"])
    out = tmp_path / "abl"
    res = ablate(cfg, out, data=smoke_ds[0])
    (r,) = res["rows"][row]["runs"]
    assert r["run"] == "tla_flow_table_contact_mean_constrained_s0" and r["constrained"]
    assert r["parse_failure_rate"] == 0.0  # 3 training steps: only the grammar makes these answers parse
    metrics = json.loads((out / "offline" / r["run"] / "metrics.json").read_text())
    assert metrics["constrained"] is True
    pred = json.loads((out / "offline" / r["run"] / "predictions.jsonl").read_text().splitlines()[0])
    assert pred["text"].startswith("contact: ") and "; action: [" in pred["text"]
    trained = json.loads((out / "runs" / "tla_flow_table_contact_s0" / "config.json").read_text())
    assert trained["policy_config"]["answer"] == "contact_action"
    assert "contact reasoning" in (out / "report.md").read_text()


def test_the_dpo_rows_tune_the_tiny_presets_run_of_the_same_seed():
    by_row = {r.row: r for r in runs(AblationConfig(seeds=(2,), variants=DPO_VARIANTS))}
    dpo, top = by_row["SP-TLA tiny preset + DPO"], by_row["SP-TLA tiny preset + DPO, top beam"]
    tiny = by_row[TINY_PRESET["tla"]]
    assert dpo.key == top.key == "tla_flow_table_dpo_s2" and (dpo.decode, top.decode) == ("mean", "top")
    assert dpo.tunes.key == tiny.key == "tla_flow_table_s2"  # the tiny preset's own run, seed 2
    assert dpo.tunes.overrides == tiny.overrides and dpo.eval_key == "tla_flow_table_dpo_mean_s2"


@pytest.mark.slow
def test_the_dpo_row_tunes_the_trained_run_and_is_scored_like_any_run(tmp_path, smoke_ds):
    row = "SP-TLA tiny preset + DPO"
    cfg = AblationConfig(data_preset="smoke", seeds=(0,), variants=(row,), tla_steps=40, episodes=1,
                         clearance=2.0, train_overrides=["train.batch_size=4", "train.val_fraction=0.1"])
    out = tmp_path / "abl"
    res = ablate(cfg, out, data=smoke_ds[0])
    assert "ood_gcr" not in res["rows"][row]["runs"][0]
    # unseen shapes added to the finished ablation: only their evaluations run, nothing is retrained
    stamps = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    res = ablate(AblationConfig(**{**cfg.__dict__, "ood_shapes": ("round",)}), out, data=smoke_ds[0])
    assert {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json") if p.name in stamps} == stamps
    assert (out / "offline_ood" / "tla_flow_table_dpo_mean_s0" / "metrics.json").exists()
    ood = json.loads((out / "offline_ood" / "tla_flow_table_dpo_mean_s0" / "metrics.json").read_text())
    assert ood["split"] == "mp_test_ood" and ood["decode"] == "mean"
    row_res = res["rows"][row]
    assert row_res["ood_gcr"]["mean"] == ood["gcr"] and 0 <= row_res["ood_success_round"]["mean"] <= 1
    assert "## Out of distribution: unseen peg shapes (round)" in (out / "report.md").read_text()
    (r,) = res["rows"][row]["runs"]
    assert (r["run"], r["train_run"]) == ("tla_flow_table_dpo_mean_s0", "tla_flow_table_dpo_s0")
    tuned = json.loads((out / "runs" / "tla_flow_table_dpo_s0" / "config.json").read_text())
    assert tuned["stage"] == "dpo" and tuned["sft_run"] == str((out / "runs" / "tla_flow_table_s0").resolve())
    assert tuned["pairs"]["train"]["pairs"] > 0 and tuned["train"]["lr"] == 5e-6
    assert (out / "stages" / "train_tla_flow_table_s0.json").exists()  # the tuned run was trained first
    assert not (out / "offline" / "tla_flow_table_mean_s0").exists()  # ... but not evaluated: not selected


def test_cli_mixes_row_groups_and_names_and_passes_the_unseen_shapes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import tla.experiments.ablation as ablation
    from tla.cli import app

    seen = {}
    monkeypatch.setattr(ablation, "ablate", lambda cfg, out, data, reuse, report_only: seen.setdefault("cfg", cfg))
    r = CliRunner().invoke(app, ["ablate", "--out", str(tmp_path), "--seeds", "0,2", "--ood", "round, hexagon",
                                 "--variants", f"answers,dpo,{DEFAULT_VARIANTS[0]}"])
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    # each group in its order, the BC row both groups hold once, then the named row
    assert cfg.variants == tuple(dict.fromkeys((*ANSWER_VARIANTS, *DPO_VARIANTS, DEFAULT_VARIANTS[0])))
    assert cfg.variants.count(TINY_PRESET["bc"]) == 1
    assert cfg.ood_shapes == ("round", "hexagon") and cfg.seeds == (0, 2)
