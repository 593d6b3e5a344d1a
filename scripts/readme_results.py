"""Write the committed run's claims, one verdict per claim, into README.md, with links to the full reports.

    python scripts/readme_results.py            # after `make repro`, before committing its outputs

Replaces what lies between the markers ``<!-- results:start -->`` and ``<!-- results:end -->`` with a short
table built from ``data/08_reporting/claims.json`` (each claim, its reproduced and published PQ differences,
its verdict) and links to ``claims.md`` (the rule and every comparison) and to the tables the pipeline writes
(``data/08_reporting/tables/index.md``, ``table<N>.md``). Nothing else in the README changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def comparison_cell(comparison: dict) -> str:
    """``-1.4 ± 0.8 (+0.7)``: reproduced difference ± its standard error (the paper's difference)."""
    if comparison.get("diff") is None:
        return f"missing ({_signed(comparison.get('paper_diff'))})"
    se = "" if comparison.get("se") is None else f" ± {comparison['se']:.1f}"
    return f"{_signed(comparison['diff'])}{se} ({_signed(comparison.get('paper_diff'))})"


def claims_table(claims: dict) -> str:
    lines = ["| # | Claim | Δ PQ reproduced ± SE (paper) | Verdict |", "|---|---|---|---|"]
    for claim in claims["claims"]:
        cells = "; ".join(comparison_cell(c) for c in claim["comparisons"]) or "-"
        lines.append(f"| {claim['number']} | {claim['text']} | {cells} | **{claim['verdict']}** |")
    return "\n".join(lines)


def table_links(tables_dir: Path) -> str:
    tables = sorted(tables_dir.glob("table*.md"), key=lambda p: int(p.stem.removeprefix("table")))
    links = [f"[Table {p.stem.removeprefix('table')}]({tables_dir.as_posix()}/{p.name})" for p in tables]
    return ", ".join(links)


def results_block(reporting: Path) -> str:
    claims = json.loads((reporting / "claims.json").read_text(encoding="utf-8"))
    folder, tables = reporting.as_posix(), (reporting / "tables").as_posix()
    return "\n\n".join([
        f"The paper's claims, checked on the `{claims['profile']}` profile (generated from "
        f"[`{folder}/claims.json`]({folder}/claims.json)):",
        claims_table(claims),
        f"The verdict rule and every comparison: [`{folder}/claims.md`]({folder}/claims.md). "
        f"The tables next to the paper's numbers: [`{tables}/`]({tables}/index.md) "
        f"({table_links(reporting / 'tables')}; also CSV and LaTeX).",
    ])


def main(argv: list[str] | None = None) -> int:
    readme, reporting = Path("README.md"), Path("data/08_reporting")
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        print(f"{readme}: expected one '{START}' before one '{END}'", file=sys.stderr)
        return 1
    head, rest = text.split(START)
    _, tail = rest.split(END)
    readme.write_text(f"{head}{START}\n{results_block(reporting)}\n{END}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
