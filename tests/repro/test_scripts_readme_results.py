"""scripts/readme_results.py: the README's results block is the claims table (one verdict per claim) + links."""

from __future__ import annotations

import json

from helpers.paths import load_script

readme_results = load_script("readme_results")

CLAIMS = {"profile": "tiny", "claims": [
    {"number": 1, "text": "Lambda has an interior optimum", "verdict": "not resolved at this scale",
     "comparisons": [{"diff": -1.4, "se": 0.8, "paper_diff": 0.7}, {"diff": 2.42, "se": 1.69, "paper_diff": -0.3}]},
    {"number": 2, "text": "Sub-nets help", "verdict": "missing rows",
     "comparisons": [{"paper_diff": 0.6, "verdict": "missing rows"}]},
]}


def test_comparison_cell_is_reproduced_se_and_paper():
    assert readme_results.comparison_cell({"diff": 30.67, "se": 9.31, "paper_diff": 2.9}) == "+30.7 ± 9.3 (+2.9)"
    assert readme_results.comparison_cell({"diff": -0.04, "se": None, "paper_diff": None}) == "-0.0 (n/a)"
    assert readme_results.comparison_cell({"paper_diff": 0.6}) == "missing (+0.6)"


def test_block_between_the_markers_is_replaced(tmp_path, monkeypatch):
    (tmp_path / "data/08_reporting/tables").mkdir(parents=True)
    (tmp_path / "data/08_reporting/claims.json").write_text(json.dumps(CLAIMS))
    for n in (10, 2):  # numeric order, not text order
        (tmp_path / f"data/08_reporting/tables/table{n}.md").write_text(f"# Table {n}\n\n| a |\n")
    (tmp_path / "README.md").write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    monkeypatch.chdir(tmp_path)
    assert readme_results.main() == 0
    assert (tmp_path / "README.md").read_text() == (
        "intro\n<!-- results:start -->\n"
        "The paper's claims, checked on the `tiny` profile (generated from "
        "[`data/08_reporting/claims.json`](data/08_reporting/claims.json)):\n\n"
        "| # | Claim | Δ PQ reproduced ± SE (paper) | Verdict |\n|---|---|---|---|\n"
        "| 1 | Lambda has an interior optimum | -1.4 ± 0.8 (+0.7); +2.4 ± 1.7 (-0.3) "
        "| **not resolved at this scale** |\n"
        "| 2 | Sub-nets help | missing (+0.6) | **missing rows** |\n\n"
        "The verdict rule and every comparison: [`data/08_reporting/claims.md`](data/08_reporting/claims.md). "
        "The tables next to the paper's numbers: [`data/08_reporting/tables/`](data/08_reporting/tables/index.md) "
        "([Table 2](data/08_reporting/tables/table2.md), [Table 10](data/08_reporting/tables/table10.md); "
        "also CSV and LaTeX).\n"
        "<!-- results:end -->\n\nafter\n")


def test_missing_markers_are_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "README.md").write_text("no markers\n")
    monkeypatch.chdir(tmp_path)
    assert readme_results.main() == 1
    assert capsys.readouterr().err.strip() == (
        "README.md: expected one '<!-- results:start -->' before one '<!-- results:end -->'")
    assert (tmp_path / "README.md").read_text() == "no markers\n"
