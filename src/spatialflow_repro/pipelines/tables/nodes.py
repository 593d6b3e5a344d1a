"""Tables 1-7 of the paper, regenerated side by side with the published numbers.

Inputs (all from the Kedro catalog): the published numbers (``paper_tables``, which also maps each row of
the paper to the project row that reproduces it), the row metrics of each kind (``lambda``: Table 1 on val,
``val``: Tables 2-4 and 7, ``testdev``: Tables 5-6; one JSON per row) and Table 1's lambda search.
Output: ``table<n>.{md,csv,tex}``, ``index.md`` and ``summary.json`` as one folder of text files; every
file is byte-identical across reruns with the same inputs (no dates, fixed order).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from spatialflow.errors import ConfigError, DataError
from spatialflow.panoptic.pq import paper_columns

TESTDEV_TABLES = frozenset({5, 6})  # these read the test-dev metrics
BOX_FILL_TABLES = frozenset({2, 3})  # these show "PQ (box fill)" when a row's metrics carry a box_fill block


class RowMetrics(NamedTuple):
    """Every row's metrics JSON by kind: ``{row: metrics}`` for Table 1's search rows (kind ``lambda``), on
    val and on test-dev."""

    search: dict[str, dict]
    val: dict[str, dict]
    testdev: dict[str, dict]


def metrics_kind(number: int) -> str:
    """Which metrics a table reads: ``lambda`` (Table 1), ``testdev`` (Tables 5-6) or ``val``."""
    return "lambda" if number == 1 else "testdev" if number in TESTDEV_TABLES else "val"


def row_metrics_of(metrics: RowMetrics, number: int, row: str) -> tuple[dict | None, str]:
    """A row's metrics for Table ``number`` (None if it has none) and a name for messages."""
    kind = metrics_kind(number)
    by_row = metrics.search if kind == "lambda" else getattr(metrics, kind)
    return by_row.get(row), f"{kind} metrics of {row}"


def table_numbers(paper: dict[str, Any]) -> list[int]:
    """The paper's table numbers, in order (``table<n>`` keys of ``paper_tables``)."""
    return sorted(int(key.removeprefix("table")) for key in paper if key.startswith("table"))


def paper_rows(paper: dict[str, Any], number: int) -> list[str | None]:
    """The project row reproducing each row of Table ``number`` (None for a published peer row)."""
    return [published.get("row") for published in paper[f"table{number}"]["rows"]]


@dataclass(frozen=True)
class Column:
    key: str  # key in paper_tables.yaml / summary.json / CSV header
    markdown: str
    latex: str


LABEL_COLUMNS: dict[int, tuple[Column, ...]] = {
    1: (Column("lambda", "λ", r"$\lambda$"),),
    2: (Column("model", "Model", "Model"),),
    3: (Column("model", "Model", "Model"),),
    4: (Column("backbone", "Backbone", "Backbone"), Column("size", "Size", "Size")),
    5: (Column("model", "Model", "Model"), Column("backbone", "Backbone", "Backbone"),
        Column("image_size", "Image size", "Image size")),
    6: (Column("model", "Model", "Model"), Column("backbone", "Backbone", "Backbone")),
    7: (Column("model", "Model", "Model"),),
}
PQ_COLUMNS = (Column("pq", "PQ", "PQ"), Column("pq_th", "PQ_th", r"PQ\textsuperscript{Th}"),
              Column("pq_st", "PQ_st", r"PQ\textsuperscript{St}"))
SQ_RQ_COLUMNS = (Column("sq", "SQ", "SQ"), Column("rq", "RQ", "RQ"))


def metric_columns(table: int) -> tuple[Column, ...]:
    """PQ / PQ_th / PQ_st, plus SQ / RQ where the paper has them (Tables 5-6)."""
    return PQ_COLUMNS + SQ_RQ_COLUMNS if table in TESTDEV_TABLES else PQ_COLUMNS


# ------------------------------------------------------------------------------------------- inputs


def check_paper_tables(paper: Any, source: str = "paper_tables") -> dict[str, Any]:
    """The published numbers, checked: every table has a caption and rows; each row either names the project
    row that reproduces it (``row``) or is a published peer row (``published: true``), never both."""
    if not isinstance(paper, dict) or not table_numbers(paper):
        raise DataError(source, "expected table1 ... table7 mappings")
    for number in table_numbers(paper):
        spec = paper[f"table{number}"]
        if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list) or not spec.get("caption"):
            raise DataError(source, f"table{number} needs a caption and a list of rows")
        for i, published in enumerate(spec["rows"]):
            if bool(published.get("published", False)) == bool(published.get("row")):
                raise DataError(source, f"table{number} row {i + 1}: name the project row that reproduces it "
                                        "(row: <name>) or mark it published: true, not both")
    return paper


SELECTED = "selected_stuff_loss_weight"


def selected_weight(search: dict[str, Any] | None) -> float | None:
    """The stuff-loss weight Table 1's search selected, or None when the search has not run (or found none)."""
    if not search:
        return None
    if SELECTED not in search:
        raise DataError("lambda_search", f"missing key {SELECTED!r}")
    return None if search[SELECTED] is None else float(search[SELECTED])


def seed_metrics(metrics: dict[str, Any], path: str) -> list[dict[str, float]]:
    """One {pq, pq_th, pq_st, sq, rq} dict per seed (from ``per_seed``; ``summary`` if there is none)."""
    per_seed = metrics.get("per_seed") or []
    values = []
    for entry in per_seed:
        m = entry.get("metrics", {})
        try:
            values.append(paper_columns(m))
        except (KeyError, TypeError):
            raise DataError(path, f"per_seed entry of seed {entry.get('seed')!r} lacks All/Things/Stuff "
                                  "pq (and All sq, rq)") from None
    if not values:
        if not isinstance(metrics.get("summary"), dict):
            raise DataError(path, "has neither per_seed metrics nor a summary")
        values.append(dict(metrics["summary"]))
    return values


def box_fill_pq(metrics: dict[str, Any], path: str) -> list[float]:
    """All-PQ of each seed under the authors' box-fill merge: the evaluate pipeline's ``box_fill`` block
    (``{"merge", "per_seed": [{"seed", "metrics": {"All", "Things", "Stuff"}}], "summary", ...}``);
    [] when the row has none (no ground truth, or the main merge already fills boxes)."""
    block = metrics.get("box_fill")
    if not block:
        return []
    values = []
    for entry in block.get("per_seed") or []:
        try:
            values.append(entry["metrics"]["All"]["pq"])
        except (KeyError, TypeError):
            raise DataError(path, f"box_fill entry of seed {entry.get('seed')!r} lacks metrics All pq") from None
    return values


def mean_and_std(values: list[dict[str, float]], keys: list[str]) -> tuple[dict, dict | None]:
    """Mean over seeds and sample standard deviation (None with a single seed)."""
    mean = {k: _mean([v.get(k) for v in values]) for k in keys}
    if len(values) < 2:
        return mean, None
    return mean, {k: _stdev([v.get(k) for v in values]) for k in keys}


def _mean(xs: list[float | None]) -> float | None:
    return None if any(x is None for x in xs) else statistics.fmean(xs)


def _stdev(xs: list[float | None]) -> float | None:
    return None if any(x is None for x in xs) else statistics.stdev(xs)


# ------------------------------------------------------------------------------------------- summary


def build_table(number: int, paper: dict[str, Any], profile: str, metrics: RowMetrics,
                selected: float | None = None) -> dict[str, Any]:
    """One table as data: the paper's rows in order, each with reproduced / published / diff values."""
    spec = paper[f"table{number}"]
    keys = [c.key for c in metric_columns(number)]
    rows = []
    for published_row in spec["rows"]:
        our_row = published_row.get("row")
        labels = {c.key: published_row.get(c.key) for c in LABEL_COLUMNS[number]}
        published = {k: published_row.get(k) for k in keys}
        record: dict[str, Any] = {
            "labels": labels, "row": our_row, "status": "published", "note": "", "seeds": [],
            "reproduced": None, "reproduced_std": None, "published": published, "diff": None,
            "ran": None, "mlflow_run_ids": [],
        }
        if number == 1:
            record["selected"] = selected is not None and float(labels["lambda"]) == selected
        if our_row is not None:
            row_metrics, source = row_metrics_of(metrics, number, our_row)
            record.update(_reproduced(row_metrics, source, profile, keys, published))
            if number in BOX_FILL_TABLES and record["status"] == "reproduced":
                record["box_fill"] = _box_fill(row_metrics, source)
        rows.append(record)
    table: dict[str, Any] = {
        "number": number,
        "caption": f"{spec['caption']} (profile: {profile})",
        "split": "test-dev" if number in TESTDEV_TABLES else "val",
        "label_columns": [c.key for c in LABEL_COLUMNS[number]],
        "metrics": keys,
        "rows": rows,
        "box_fill": any(r.get("box_fill") for r in rows),
    }
    if number == 1:
        table[SELECTED] = selected
    return table


def _reproduced(metrics: dict | None, path: str, profile: str, keys: list[str], published: dict) -> dict:
    """The reproduced part of a row record; 'not_run' when the file is absent, marks the row as skipped
    (the profile does not run its table) or comes from another profile."""
    if metrics is None or metrics.get("skipped") or metrics.get("profile", profile) != profile:
        return {"status": "not_run", "note": f"not run in profile {profile}"}
    per_seed = metrics.get("per_seed") or []
    common = {
        "ran": metrics.get("ran"),
        "seeds": list(metrics.get("seeds") or [s.get("seed") for s in per_seed]),
        "mlflow_run_ids": [s["mlflow_run_id"] for s in per_seed if s.get("mlflow_run_id")],
    }
    if metrics.get("has_ground_truth", True) is False:
        return {**common, "status": "submitted", "note": f"submitted: {metrics.get('submission')}"}
    mean, std = mean_and_std(seed_metrics(metrics, path), keys)
    diff = {k: None if mean[k] is None or published[k] is None else round(mean[k] - published[k], 4)
            for k in keys}
    return {**common, "status": "reproduced", "reproduced": mean, "reproduced_std": std, "diff": diff}


def _box_fill(metrics: dict, path: str) -> dict[str, float | None] | None:
    """Mean and sample std over seeds of the box-fill PQ (std None with one seed); None without box_fill."""
    values = box_fill_pq(metrics, path)
    if not values:
        return None
    mean, std = mean_and_std([{"pq": v} for v in values], ["pq"])
    return {"pq": mean["pq"], "pq_std": None if std is None else std["pq"]}


def build_summary(profile: str, paper: dict[str, Any], metrics: RowMetrics,
                  lambda_search: dict[str, Any] | None) -> dict[str, Any]:
    """Every table's rows as data (written as ``summary.json``; read by the figures and the notebook)."""
    selected = selected_weight(lambda_search)
    tables = {f"table{n}": build_table(n, paper, profile, metrics, selected) for n in table_numbers(paper)}
    return {"profile": profile, "tables": tables}


# ------------------------------------------------------------------------------------------ rendering


def fmt(value: float | None) -> str:
    """One decimal like the paper; '' for a missing value."""
    return "" if value is None else f"{value:.1f}"


def fmt_mean_std(mean: float | None, std: float | None) -> str:
    return fmt(mean) if std is None or mean is None else f"{fmt(mean)} ± {fmt(std)}"


def fmt_diff(reproduced: float | None, published: float | None) -> str:
    """Signed difference of the displayed (one-decimal) values, e.g. '+1.5', '-0.3', '+0.0'."""
    if reproduced is None or published is None:
        return ""
    return f"{round(float(fmt(reproduced)) - published, 1) + 0.0:+.1f}"


def label_text(row: dict[str, Any], key: str) -> str:
    """A label cell; the selected lambda of Table 1 is marked."""
    value = row["labels"][key]
    text = "" if value is None else str(value)
    if key == "lambda" and row.get("selected"):
        text += " (selected)"
    return text


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def table_frame(table: dict[str, Any]) -> pd.DataFrame:
    """One table as plain data, one line per paper row (the CSV and the notebook's frame): labels, our row,
    status, note, per metric the mean over seeds, its std, the paper's value and the difference
    (unformatted, rounded to 3 decimals), the box-fill PQ where the table has it, what ran, the run ids."""
    keys = table["metrics"]
    records = []
    for row in table["rows"]:
        record: dict[str, Any] = {**row["labels"], "row": row["row"] or "", "status": row["status"],
                                  "note": row["note"]}
        if table["number"] == 1:
            record["selected"] = bool(row["selected"])
        reproduced, std, diff = row["reproduced"] or {}, row["reproduced_std"] or {}, row["diff"] or {}
        for key in keys:
            record[key] = _rounded(reproduced.get(key))
            record[f"{key}_std"] = _rounded(std.get(key))
            record[f"paper_{key}"] = _rounded(row["published"].get(key))
            record[f"diff_{key}"] = _rounded(diff.get(key))
        if table.get("box_fill"):
            box_fill = row.get("box_fill") or {}
            record["pq_box_fill"] = _rounded(box_fill.get("pq"))
            record["pq_box_fill_std"] = _rounded(box_fill.get("pq_std"))
        record["ran"] = row["ran"] or ""
        record["mlflow_run_ids"] = ";".join(row["mlflow_run_ids"])
        records.append(record)
    return pd.DataFrame.from_records(records)


def display_frame(table: dict[str, Any]) -> pd.DataFrame:
    """One table as displayed cells (one decimal, 'mean ± std', signed Δ); columns are (group, key) with
    group '' (labels), 'row', 'reproduced', 'paper', 'diff', 'box_fill', 'ran' and 'runs'."""
    keys = table["metrics"]
    records = []
    for row in table["rows"]:
        cells: dict[tuple[str, str], str] = {("", k): label_text(row, k) for k in table["label_columns"]}
        cells[("row", "row")] = row["row"] or "published"
        std = row["reproduced_std"] or {}
        for i, key in enumerate(keys):
            if row["status"] == "reproduced":
                cells[("reproduced", key)] = fmt_mean_std(row["reproduced"][key], std.get(key))
            else:  # the note ("not run in profile tiny", "submitted: ...") in the first reproduced cell
                cells[("reproduced", key)] = row["note"] if i == 0 else ""
        for key in keys:
            cells[("paper", key)] = fmt(row["published"][key])
        for key in keys:
            cells[("diff", key)] = fmt_diff(row["reproduced"][key], row["published"][key]) if row["reproduced"] else ""
        if table.get("box_fill"):
            box_fill = row.get("box_fill") or {}
            cells[("box_fill", "pq")] = fmt_mean_std(box_fill.get("pq"), box_fill.get("pq_std"))
        cells[("ran", "ran")] = row["ran"] or ""
        cells[("runs", "runs")] = ", ".join(row["mlflow_run_ids"])
        records.append(cells)
    frame = pd.DataFrame.from_records(records)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _markdown_header(group: str, key: str, columns: dict[str, Column]) -> str:
    name = columns[key].markdown if key in columns else ""
    return {"": name, "row": "Row", "reproduced": name, "paper": f"{name} (paper)", "diff": f"Δ {name}",
            "box_fill": "PQ (box fill)", "ran": "Ran", "runs": "MLflow run"}[group]


def _all_columns(number: int) -> dict[str, Column]:
    return {c.key: c for c in LABEL_COLUMNS[number] + metric_columns(number)}


def render_markdown(table: dict[str, Any]) -> str:
    """A markdown pipe table (``DataFrame.to_markdown``) with a heading (caption) and a short legend."""
    columns = _all_columns(table["number"])
    frame = display_frame(table)
    frame.columns = [_markdown_header(group, key, columns) for group, key in frame.columns]
    frame = frame.map(lambda text: text.replace("|", r"\|"))
    body = frame.to_markdown(index=False, disable_numparse=True)
    lines = [f"# Table {table['number']}: {table['caption']}", "", body, "",
             f"Split: {table['split']}. Reproduced values are the mean over seeds (± sample standard "
             "deviation with more than one seed); Δ = reproduced − published, of the displayed values."]
    if table.get("box_fill"):
        lines.append("PQ (box fill): the same checkpoints evaluated with the authors' box-fill merge "
                     "(using_bbox=True, overlap 0.5).")
    if table["number"] == 1:
        selected = table.get(SELECTED)
        lines.append(f"Selected λ (best PQ on val): {selected}." if selected is not None
                     else "No lambda search result yet.")
    return "\n".join(lines) + "\n"


def render_csv(table: dict[str, Any]) -> str:
    """Plain CSV of ``table_frame``: unformatted numbers (mean and std in separate columns), status, notes."""
    return table_frame(table).to_csv(index=False, lineterminator="\n")


_LATEX_GROUPS = {"": "", "reproduced": "Reproduced", "paper": "Paper", "diff": r"$\Delta$",
                 "box_fill": "Box fill"}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in the caption (the cells are escaped by ``Styler.format(escape='latex')``)."""
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(specials.get(ch, ch) for ch in text)


def render_latex(table: dict[str, Any]) -> str:
    """A booktabs table (``Styler.to_latex``): labels | reproduced | paper | Δ [| box fill]; what each row ran
    and its run ids are in the .md / .csv (they would make a paper table unreadably wide)."""
    columns = _all_columns(table["number"])
    frame = display_frame(table)
    frame = frame.loc[:, [group in _LATEX_GROUPS for group, _ in frame.columns]]
    frame.columns = pd.MultiIndex.from_tuples(
        [(_LATEX_GROUPS[group], "PQ" if group == "box_fill" else columns[key].latex) for group, key in frame.columns])
    n_labels = len(table["label_columns"])
    styler = frame.style.hide(axis="index").format(lambda text: text.replace(" ± ", r" $\pm$ "), escape="latex")
    return styler.to_latex(
        hrules=True, position="t", position_float="centering", multicol_align="c",
        column_format="l" * n_labels + "c" * (frame.shape[1] - n_labels),
        caption=latex_escape(table["caption"]), label=f"tab:table{table['number']}")


def render_index(summary: dict[str, Any], paper: dict[str, Any]) -> str:
    """Links to every table with one line each: caption and how many rows were reproduced."""
    lines = [f"# Reproduced tables (profile: {summary['profile']})", "",
             "Each table shows the reproduced numbers next to the paper's, their difference, what each row "
             "ran and its MLflow run. Data for all tables: [summary.json](summary.json).", ""]
    for name, table in summary["tables"].items():
        rows = table["rows"]
        ours = [r for r in rows if r["status"] != "published"]
        done = sum(r["status"] in ("reproduced", "submitted") for r in ours)
        peers = len(rows) - len(ours)
        line = (f"- [Table {table['number']}]({name}.md) ([csv]({name}.csv), [tex]({name}.tex)): "
                f"{paper[name]['caption']} ({table['split']}) — {done} of {len(ours)} rows reproduced")
        if peers:
            line += f", {peers} published peer rows"
        lines.append(line + ".")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- writing


def table_files(summary: dict[str, Any], paper: dict[str, Any]) -> dict[str, str]:
    """``{file name: text}``: ``table<n>.{md,csv,tex}``, ``index.md`` and ``summary.json``."""
    files: dict[str, str] = {}
    for name, table in summary["tables"].items():
        files[f"{name}.md"] = render_markdown(table)
        files[f"{name}.csv"] = render_csv(table)
        files[f"{name}.tex"] = render_latex(table)
    files["index.md"] = render_index(summary, paper)
    files["summary.json"] = json.dumps(summary, indent=2) + "\n"
    return files


def check_profile(profile: Any) -> str:
    if not isinstance(profile, str) or not profile:
        raise ConfigError(f"params 'profile' must be a profile name, got {profile!r}")
    return profile


def generate_tables(profile: str, paper: dict[str, Any], lambda_metrics: dict[str, dict],
                    val_metrics: dict[str, dict], testdev_metrics: dict[str, dict],
                    lambda_search: dict[str, Any] | None) -> dict[str, str]:
    """Kedro node: Tables 1-7 from the row metrics -> the table files (``summary.json`` among them)."""
    paper = check_paper_tables(paper)
    metrics = RowMetrics(lambda_metrics, val_metrics, testdev_metrics)
    summary = build_summary(check_profile(profile), paper, metrics, lambda_search)
    return table_files(summary, paper)
