"""Tables 1-7 of the paper, regenerated side by side with the published numbers.

Input: one metrics JSON per trained row, written by the train / evaluate pipelines:
``data/08_reporting/metrics/lambda/<row>.json`` (Table 1), ``metrics/val/<row>.json`` (Tables 2-4, 7) and
``metrics/testdev/<row>.json`` (Tables 5-6); Table 1's ``data/08_reporting/lambda_search.json`` and the
published numbers in ``spatialflow_repro/reference/paper_tables.yaml``.
Output: ``data/08_reporting/tables/table<n>.{md,csv,tex}``, ``index.md`` and ``summary.json``; every file
is byte-identical across reruns with the same inputs (no dates, fixed order).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from spatialflow.errors import ConfigError, DataError
from spatialflow.utils.atomic import atomic_write_json, atomic_write_text

REPORTING_DIR = Path("data/08_reporting")
METRICS_DIR = REPORTING_DIR / "metrics"  # lambda/<row>.json, val/<row>.json, testdev/<row>.json
TABLES_DIR = REPORTING_DIR / "tables"
LAMBDA_SEARCH_FILE = REPORTING_DIR / "lambda_search.json"

PUBLISHED = None  # a published peer row of the paper (no reproduction)

# Our training rows -> the paper's rows, in the paper's order (one entry per row of paper_tables.yaml).
PAPER_ROWS: dict[int, tuple[str | None, ...]] = {
    1: ("t1_lambda_1_00", "t1_lambda_0_75", "t1_lambda_0_50", "t1_lambda_0_40",
        "t1_lambda_0_30", "t1_lambda_0_25", "t1_lambda_0_20", "t1_lambda_0_10"),
    2: ("t2_baseline", "t2_subnets", "t2_reg_cls", "t2_reg_stuff", "t2_reg_mask", "t2_spatialflow"),
    3: ("t3_baseline", "t3_subnets", "t3_reg_cls", "t3_reg_stuff", "t3_reg_mask", "t3_spatialflow"),
    4: ("t4_r50_600", "t4_r101_600", "t2_spatialflow", "t4_r101_800"),  # (R50,600) (R101,600) (R50,800) (R101,800)
    5: (PUBLISHED, PUBLISHED, PUBLISHED, PUBLISHED, "t4_r101_600", "t4_r101_800"),
    6: (PUBLISHED, PUBLISHED, PUBLISHED, PUBLISHED, PUBLISHED, "t6_r101_dcn"),
    7: (PUBLISHED, PUBLISHED, PUBLISHED, PUBLISHED, "t7_r101", "t7_r101_coco"),
}
TESTDEV_TABLES = frozenset({5, 6})  # these read the test-dev metrics
BOX_FILL_TABLES = frozenset({2, 3})  # these show "PQ (box fill)" when a row's metrics carry a box_fill block


def metrics_file(number: int, row: str, metrics_dir: str | os.PathLike = METRICS_DIR) -> Path:
    """Where the metrics of ``row`` for Table ``number`` live (lambda / val / testdev sub-folder)."""
    kind = "lambda" if number == 1 else "testdev" if number in TESTDEV_TABLES else "val"
    return Path(metrics_dir) / kind / f"{row}.json"


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


def load_paper_tables(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The published numbers (``reference/paper_tables.yaml`` of this package unless ``path`` is given)."""
    if path is None:
        text = resources.files("spatialflow_repro").joinpath("reference", "paper_tables.yaml").read_text("utf-8")
        source: str | os.PathLike = "spatialflow_repro/reference/paper_tables.yaml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), path
    try:
        paper = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(source, f"not valid YAML ({exc})") from None
    for number, rows in PAPER_ROWS.items():
        published = (paper or {}).get(f"table{number}", {}).get("rows")
        if not isinstance(published, list) or len(published) != len(rows):
            raise DataError(source, f"table{number} must list {len(rows)} rows (the code maps that many)")
        for i, (ours, theirs) in enumerate(zip(rows, published)):
            if (ours is PUBLISHED) != bool(theirs.get("published", False)):
                raise DataError(source, f"table{number} row {i + 1}: 'published' disagrees with PAPER_ROWS")
    return paper


def read_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """A row's metrics JSON, or None if the file does not exist; DataError if it does not parse."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, "top level is not a JSON object")
    return data


def read_selected_lambda(path: str | os.PathLike) -> float | None:
    """``selected_lambda`` of Table 1's lambda search, or None when the search has not run."""
    data = read_metrics(path)
    if data is None:
        return None
    if "selected_lambda" not in data:
        raise DataError(path, "missing key 'selected_lambda'")
    return float(data["selected_lambda"])


def seed_metrics(metrics: dict[str, Any], path: str | os.PathLike) -> list[dict[str, float]]:
    """One {pq, pq_th, pq_st, sq, rq} dict per seed (from ``per_seed``; ``summary`` if there is none)."""
    per_seed = metrics.get("per_seed") or []
    values = []
    for entry in per_seed:
        m = entry.get("metrics", {})
        try:
            values.append({"pq": m["All"]["pq"], "pq_th": m["Things"]["pq"], "pq_st": m["Stuff"]["pq"],
                           "sq": m["All"]["sq"], "rq": m["All"]["rq"]})
        except (KeyError, TypeError):
            raise DataError(path, f"per_seed entry of seed {entry.get('seed')!r} lacks All/Things/Stuff "
                                  "pq (and All sq, rq)") from None
    if not values:
        if not isinstance(metrics.get("summary"), dict):
            raise DataError(path, "has neither per_seed metrics nor a summary")
        values.append(dict(metrics["summary"]))
    return values


def box_fill_pq(metrics: dict[str, Any], path: str | os.PathLike) -> list[float]:
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


def build_table(
    number: int,
    paper: dict[str, Any],
    profile: str,
    metrics_dir: str | os.PathLike = METRICS_DIR,
    selected_lambda: float | None = None,
) -> dict[str, Any]:
    """One table as data: the paper's rows in order, each with reproduced / published / diff values."""
    spec = paper[f"table{number}"]
    keys = [c.key for c in metric_columns(number)]
    rows = []
    for our_row, published_row in zip(PAPER_ROWS[number], spec["rows"]):
        labels = {c.key: published_row.get(c.key) for c in LABEL_COLUMNS[number]}
        published = {k: published_row.get(k) for k in keys}
        record: dict[str, Any] = {
            "labels": labels, "row": our_row, "status": "published", "note": "", "seeds": [],
            "reproduced": None, "reproduced_std": None, "published": published, "diff": None,
            "ran": None, "mlflow_run_ids": [],
        }
        if number == 1:
            record["selected"] = selected_lambda is not None and float(labels["lambda"]) == selected_lambda
        if our_row is not PUBLISHED:
            path = metrics_file(number, our_row, metrics_dir)
            metrics = read_metrics(path)
            record.update(_reproduced(metrics, path, profile, keys, published))
            if number in BOX_FILL_TABLES and record["status"] == "reproduced":
                record["box_fill"] = _box_fill(metrics, path)
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
        table["selected_lambda"] = selected_lambda
    return table


def _reproduced(metrics: dict | None, path: Path, profile: str, keys: list[str], published: dict) -> dict:
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


def _box_fill(metrics: dict, path: Path) -> dict[str, float | None] | None:
    """Mean and sample std over seeds of the box-fill PQ (std None with one seed); None without box_fill."""
    values = box_fill_pq(metrics, path)
    if not values:
        return None
    mean, std = mean_and_std([{"pq": v} for v in values], ["pq"])
    return {"pq": mean["pq"], "pq_std": None if std is None else std["pq"]}


def build_summary(
    profile: str,
    paper: dict[str, Any] | None = None,
    metrics_dir: str | os.PathLike = METRICS_DIR,
    lambda_search_file: str | os.PathLike = LAMBDA_SEARCH_FILE,
) -> dict[str, Any]:
    """Every table's rows as data (written as ``summary.json``; read by the figures and the notebook)."""
    paper = paper if paper is not None else load_paper_tables()
    selected = read_selected_lambda(lambda_search_file)
    tables = {f"table{n}": build_table(n, paper, profile, metrics_dir, selected) for n in PAPER_ROWS}
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
        selected = table.get("selected_lambda")
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


def write_tables(summary: dict[str, Any], out_dir: str | os.PathLike, paper: dict[str, Any] | None = None) -> None:
    """Write ``table<n>.{md,csv,tex}``, ``index.md`` and ``summary.json`` into ``out_dir`` (atomically)."""
    paper = paper if paper is not None else load_paper_tables()
    out = Path(out_dir)
    for name, table in summary["tables"].items():
        atomic_write_text(out / f"{name}.md", render_markdown(table))
        atomic_write_text(out / f"{name}.csv", render_csv(table))
        atomic_write_text(out / f"{name}.tex", render_latex(table))
    atomic_write_text(out / "index.md", render_index(summary, paper))
    atomic_write_json(out / "summary.json", summary)


def generate_tables(profile: str) -> dict[str, Any]:
    """Kedro node: build Tables 1-7 from the row metrics on disk, write them, return the summary."""
    if not isinstance(profile, str) or not profile:
        raise ConfigError(f"params 'profile' must be a profile name, got {profile!r}")
    paper = load_paper_tables()
    summary = build_summary(profile, paper)
    write_tables(summary, TABLES_DIR, paper)
    return summary
