"""`tla reproduce --preset smoke` runs the whole chain and resumes from its stage markers."""

import json

import pytest
from typer.testing import CliRunner

from tla.cli import app


@pytest.mark.slow
def test_reproduce_smoke_writes_all_four_tables_and_resumes(tmp_path):
    out = tmp_path / "repro"
    res = CliRunner().invoke(app, ["reproduce", "--preset", "smoke", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    for title in ("## Table I", "## Table II", "## Table III", "## Table IV", "## Figure 4", "Wall time per stage"):
        assert title in report
    assert "(12.5)" in report and "(96 / 3.15)" in report  # the paper's numbers beside ours
    results = json.loads((out / "results.json").read_text())
    assert set(results["table1"]) == {"BC", "DP", "SP-TLA"}
    assert set(results["table3"]) == {"BC", "DP", "SP-TLA", "MP-TLA"}
    assert all(len(rows) == 4 for rows in results["table4"].values())
    assert (out / "offline" / "sp_tla" / "sp_test" / "fig4.png").exists()
    # the oracle on the same episodes, the training budgets and the collapse column are in the report
    assert len(results["table3_oracle"]) == 3 and len(results["table4_oracle"]) == 4
    assert report.count("| oracle (true error -> label; same episodes) |") == 2
    assert "## Training budgets" in report and set(results["budgets"]) == {
        "bc_sp", "dp_sp", "sp_tla", "bc_mp", "dp_mp", "mp_tla"}
    assert "distinct answers (modal %)" in report
    assert "NaN" not in (out / "results.json").read_text()
    stamps = {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")}
    again = CliRunner().invoke(app, ["reproduce", "--preset", "smoke", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime for p in (out / "stages").glob("*.json")} == stamps  # all skipped
