"""`tla ablate` on smoke data: every variant x seed trains, is scored and lands in the report with its
spread; a rerun resumes; another configuration in the same folder is refused."""

import json

import pytest

from tla.eval.ablation import PAPER_INPUT, VARIANTS, AblationConfig, ablate, runs


def test_variants_go_from_the_paper_input_to_the_tiny_preset():
    from tla.policies.tla.config import tla_preset

    paper = tla_preset("tiny", list(VARIANTS["paper input"]))
    assert paper.preprocess.identity and not paper.model.position_table
    assert VARIANTS["paper input"] == PAPER_INPUT
    full = tla_preset("tiny", list(VARIANTS["+ both (tiny preset)"]))
    assert full.preprocess.demarker and full.preprocess.contrast and full.model.position_table
    keys = [k for k, *_ in runs(AblationConfig(seeds=(0, 1)))]
    assert len(keys) == len(set(keys)) == 2 * (len(VARIANTS) + 1)  # every variant + BC, per seed


@pytest.mark.slow
def test_ablation_on_smoke_data_reports_every_seed_and_resumes(tmp_path):
    cfg = AblationConfig(data_preset="smoke", seeds=(0, 1), variants=("paper input", "+ both (tiny preset)"),
                         tla_steps=3, bc_steps=3, episodes=2, clearance=2.0,
                         train_overrides=["train.batch_size=4", "train.val_fraction=0.1"])
    out = tmp_path / "abl"
    res = ablate(cfg, out)
    assert set(res["rows"]) == {"SP-TLA paper input", "SP-TLA + both (tiny preset)", "BC"}
    for row in res["rows"].values():
        assert row["seeds"] == [0, 1]
        d = row["direction_x"]
        assert d["min"] <= d["mean"] <= d["max"] and d["std"] is not None
    # the two seeds really are different runs
    seeds = res["rows"]["SP-TLA + both (tiny preset)"]["runs"]
    cfg0, cfg1 = (json.loads((out / "runs" / r["run"] / "config.json").read_text()) for r in seeds)
    assert cfg0["policy_config"]["model"]["seed"] == 0 and cfg1["policy_config"]["model"]["seed"] == 1
    assert cfg0["train"]["seed"] == 0 and cfg1["train"]["seed"] == 1
    report = (out / "report.md").read_text()
    assert "SP-TLA paper input" in report and "± " in report and (out / "ablation.png").exists()
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
    assert part["rows"]["BC"]["seeds"] == [0] and part["rows"]["SP-TLA paper input"]["seeds"] == [0, 1]
    assert "| BC | 0 |" in (out / "report.md").read_text()
    (out / "stages" / "offline_bc_s1.json").unlink()
    ablate(cfg, out)  # the missing evaluation is redone, nothing is retrained
    stamps = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    # fewer seeds (a selection, not a setting) reuse the finished runs and report only those
    one = ablate(AblationConfig(**{**cfg.__dict__, "seeds": (1,)}), out)
    assert one["rows"]["BC"]["seeds"] == [1] and one["rows"]["BC"]["direction_x"]["std"] is None
    assert {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")} == stamps
