"""Copy the committed run's claims report and tables into README.md ("Results of the embedded tiny profile").

    python scripts/readme_results.py            # after `make repro`, before committing its outputs

Replaces what lies between the markers ``<!-- results:start -->`` and ``<!-- results:end -->`` with
``data/08_reporting/claims.md`` and ``data/08_reporting/tables/table<N>.md`` (headings moved down two levels
so they nest under the README's section); nothing else in the README changes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def demote(markdown: str, levels: int = 2) -> str:
    """``# Title`` -> ``### Title`` (``levels`` more #), outside code blocks."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def results_block(reporting: Path) -> str:
    claims = (reporting / "claims.md").read_text(encoding="utf-8")
    tables = sorted((reporting / "tables").glob("table*.md"), key=lambda p: int(p.stem.removeprefix("table")))
    parts = [demote(claims).strip(), "### Tables"]
    parts += [demote(p.read_text(encoding="utf-8"), 3).strip() for p in tables]
    return "\n\n".join(parts)


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
