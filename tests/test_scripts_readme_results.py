"""scripts/readme_results.py: the README's results block is the claims report + the tables, nothing else."""

from __future__ import annotations

from scripts_loader import load_script

readme_results = load_script("readme_results")


def test_demote_moves_headings_down_outside_code():
    text = "# A\ntext # not a heading\n```\n# code\n```\n## B"
    assert readme_results.demote(text) == "### A\ntext # not a heading\n```\n# code\n```\n#### B"


def test_block_between_the_markers_is_replaced(tmp_path, monkeypatch):
    (tmp_path / "data/08_reporting/tables").mkdir(parents=True)
    (tmp_path / "data/08_reporting/claims.md").write_text("# Claims\n\nrule\n")
    for n in (10, 2):  # numeric order, not text order
        (tmp_path / f"data/08_reporting/tables/table{n}.md").write_text(f"# Table {n}\n\n| a |\n")
    (tmp_path / "README.md").write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\n\nafter\n")
    monkeypatch.chdir(tmp_path)
    assert readme_results.main() == 0
    assert (tmp_path / "README.md").read_text() == (
        "intro\n<!-- results:start -->\n### Claims\n\nrule\n\n### Tables\n\n#### Table 2\n\n| a |\n\n"
        "#### Table 10\n\n| a |\n<!-- results:end -->\n\nafter\n")


def test_missing_markers_are_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "README.md").write_text("no markers\n")
    monkeypatch.chdir(tmp_path)
    assert readme_results.main() == 1
    assert capsys.readouterr().err.strip() == "README.md: expected one '<!-- results:start -->' before one '<!-- results:end -->'"
    assert (tmp_path / "README.md").read_text() == "no markers\n"
