"""The claims report: each of the paper's claims, the rows it compares, and a verdict by a fixed rule.

The rule is fixed here, in code, before any number is seen, and applied to whatever comes out:

- every claim compares mean PQ (percent) over seeds: ``diff = mean(rows the paper says are better) -
  mean(the rows they beat)``; its standard error is ``sqrt(s_a^2 / n_a + s_b^2 / n_b)``;
- **reproduced** when ``diff`` has the paper's sign and ``|diff| > 2 SE``; **contradicted** when it has
  the opposite sign and ``|diff| > 2 SE``; otherwise **not resolved at this scale**;
- a row trained with one seed has no spread of its own: its ``s`` is the pooled seed standard deviation
  of the multi-seed rows (Tables 2 / 3) on the same dataset, and the report says so;
- claim 1 (an interior optimum of lambda) compares the best interior lambda with each end of the range
  (1.0 and 0.1): reproduced when it beats both by more than 2 SE, contradicted when an end beats every
  interior lambda by more than 2 SE, otherwise not resolved.

Claims name the paper's rows (table, row index); ``paper_tables`` says which project row reproduces each.
Output: the report as markdown and as JSON (byte-identical for the same metrics).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import pandas as pd

from spatialflow_repro.pipelines.tables.nodes import (
    RowMetrics,
    check_paper_tables,
    check_profile,
    paper_rows,
    row_metrics_of,
    seed_metrics,
)

Z = 2.0  # standard errors a difference must exceed to count
METRIC = "pq"
REPRODUCED, CONTRADICTED, UNRESOLVED, MISSING = ("reproduced", "contradicted", "not resolved at this scale",
                                                 "not run")
RULE = (f"A claim compares mean {METRIC.upper()} over seeds. diff = mean(better rows) - mean(baseline rows), "
        f"SE = sqrt(s_a^2/n_a + s_b^2/n_b). Reproduced: diff has the paper's sign and |diff| > {Z:g} SE. "
        f"Contradicted: the opposite sign and |diff| > {Z:g} SE. Otherwise: not resolved at this scale. A row "
        "with a single seed uses the pooled seed standard deviation of the Table 2 (COCO-like) or Table 3 "
        "(Cityscapes-like) rows as its s. Claim 1 compares the best interior lambda with both ends of the "
        "range (each difference must pass). The rule was fixed in code before the numbers were seen. Rows "
        "trained for different lengths are not compared (not resolved at this scale): their difference "
        "includes the schedule's (added with Table 6's tiny schedule of its own, 2026-12-06).")


@dataclass(frozen=True)
class Comparison:
    """The paper's row ``better`` should beat its row ``worse``: (table number, row index from 0)."""

    label: str
    better: tuple[int, int]
    worse: tuple[int, int]


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    comparisons: tuple[Comparison, ...]


CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Table 1 has an interior optimum of the stuff-loss weight lambda", ()),  # special rule
    Claim(2, "The stuff and mask sub-networks help (Table 2, row 2 vs row 1)",
          (Comparison("+ sub-nets vs baseline", (2, 1), (2, 0)),)),
    Claim(3, "Each spatial flow adds to the one before (Table 2, rows 3-6, each vs the previous)",
          (Comparison("+ reg-cls flow", (2, 2), (2, 1)),
           Comparison("+ reg-stuff flow", (2, 3), (2, 2)),
           Comparison("+ reg-mask flow", (2, 4), (2, 3)),
           Comparison("+ stuff-mask flow", (2, 5), (2, 4)))),
    Claim(4, "Full SpatialFlow beats the baseline on COCO-like (Table 2) and Cityscapes-like (Table 3) data",
          (Comparison("COCO-like", (2, 5), (2, 0)),
           Comparison("Cityscapes-like", (3, 5), (3, 0)))),
    Claim(5, "The deeper backbone and the larger image size help (Table 4)",
          (Comparison("R101 vs R50 at 600", (4, 1), (4, 0)),
           Comparison("R101 vs R50 at 800", (4, 3), (4, 2)),
           Comparison("800 vs 600 with R50", (4, 2), (4, 0)),
           Comparison("800 vs 600 with R101", (4, 3), (4, 1)))),
    Claim(6, "Deformable convolutions + multi-scale testing help on test-dev (Table 6 vs Table 5)",
          (Comparison("R101-DCN + TTA vs R101 @ 800", (6, 5), (5, 5)),)),
    Claim(7, "COCO pretraining (+ multi-scale testing, '-COCO-M') helps on Cityscapes (Table 7)",
          (Comparison("-COCO-M vs from ImageNet", (7, 5), (7, 4)),)),
)
CLAIMS_COLUMNS = ("#", "Claim", "Rows compared", "Paper Δ PQ", "Reproduced Δ PQ ± SE", "Seeds", "Verdict")
POOLED_FROM_TABLE = {"coco": 2, "cityscapes": 3}  # single-seed rows borrow these tables' seed spread


@dataclass(frozen=True)
class RowStats:
    row: str
    values: tuple[float, ...]  # PQ of each seed
    dataset: str | None
    schedule: str | None = None  # "1200 iterations": what the row trained for, where its metrics say

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)


def row_stats(table: int, row: str | None, metrics: RowMetrics) -> RowStats | None:
    if row is None:
        return None
    row_metrics, source = row_metrics_of(metrics, table, row)
    if row_metrics is None or row_metrics.get("skipped") or not row_metrics.get("has_ground_truth", True):
        return None
    values = tuple(float(v[METRIC]) for v in seed_metrics(row_metrics, source))
    schedule = row_metrics.get("schedule") or {}
    length = f"{schedule['length']} {schedule['unit']}s" if schedule.get("length") else None
    return RowStats(row, values, row_metrics.get("dataset"), length)


def pooled_std(rows: list[RowStats]) -> float | None:
    """Pooled sample standard deviation of several rows' seeds (None without any row of >= 2 seeds)."""
    multi = [r for r in rows if r.n >= 2]
    dof = sum(r.n - 1 for r in multi)
    if not dof:
        return None
    return math.sqrt(sum(statistics.variance(r.values) * (r.n - 1) for r in multi) / dof)


def verdict(diff: float, se: float | None, sign: int = 1) -> str:
    """The fixed rule: reproduced / contradicted beyond Z standard errors, else not resolved."""
    if se is None:
        return UNRESOLVED
    if sign * diff > Z * se:
        return REPRODUCED
    if sign * diff < -Z * se:
        return CONTRADICTED
    return UNRESOLVED


def _spread(stats: RowStats, pooled: dict[str, float | None]) -> tuple[float | None, str]:
    if stats.n >= 2:
        return statistics.stdev(stats.values), f"{stats.n} seeds"
    s = pooled.get(stats.dataset or "")
    return s, "1 seed (pooled s)" if s is not None else "1 seed"


def compare(a: RowStats, b: RowStats, pooled: dict[str, float | None]) -> dict[str, Any]:
    sa, na_text = _spread(a, pooled)
    sb, nb_text = _spread(b, pooled)
    diff = a.mean - b.mean
    se = None if sa is None or sb is None else math.sqrt(sa**2 / a.n + sb**2 / b.n)
    out = {"diff": round(diff, 2), "se": None if se is None else round(se, 2), "verdict": verdict(diff, se),
           "better_mean": round(a.mean, 2), "worse_mean": round(b.mean, 2), "seeds": f"{na_text} vs {nb_text}",
           "uses_pooled_spread": a.n < 2 or b.n < 2, "better_seeds": a.n, "worse_seeds": b.n}
    if a.schedule and b.schedule and a.schedule != b.schedule:
        out["schedules"] = f"{a.schedule} vs {b.schedule}"  # the difference includes the schedule's:
        out["verdict"] = UNRESOLVED                          # it says nothing about the claim
    return out


def _claim1(metrics: RowMetrics, pooled: dict[str, float | None], paper: dict) -> dict[str, Any]:
    rows = paper_rows(paper, 1)
    stats = {row: row_stats(1, row, metrics) for row in rows}
    lambdas = {row: float(p["lambda"]) for row, p in zip(rows, paper["table1"]["rows"])}
    paper_pq = {row: p[METRIC] for row, p in zip(rows, paper["table1"]["rows"])}
    if any(s is None for s in stats.values()):
        return {"number": 1, "text": CLAIMS[0].text, "verdict": MISSING, "comparisons": []}
    ends, interior = (rows[0], rows[-1]), rows[1:-1]
    best = max(interior, key=lambda r: stats[r].mean)
    comparisons = []
    for end in ends:
        c = compare(stats[best], stats[end], pooled)
        comparisons.append({"label": f"best interior lambda {lambdas[best]:g} vs lambda {lambdas[end]:g}",
                            "better": best, "worse": end,
                            "paper_diff": round(paper_pq[best] - paper_pq[end], 2), **c})
    if all(c["verdict"] == REPRODUCED for c in comparisons):
        overall = REPRODUCED
    elif any(compare(stats[end], stats[best], pooled)["verdict"] == REPRODUCED for end in ends):
        overall = CONTRADICTED  # an end of the range beats even the best interior lambda beyond 2 SE
    else:
        overall = UNRESOLVED
    return {"number": 1, "text": CLAIMS[0].text, "verdict": overall, "comparisons": comparisons,
            "pq_by_lambda": {f"{lambdas[r]:g}": round(stats[r].mean, 2) for r in rows}}


def _overall(verdicts: list[str]) -> str:
    """A claim with several comparisons: reproduced only if all are; contradicted if any is."""
    if not verdicts or MISSING in verdicts:
        return MISSING
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return UNRESOLVED


def build_claims(profile: str, metrics: RowMetrics, paper: dict) -> dict[str, Any]:
    """Every claim with its comparisons and verdict (see the module docstring for the rule)."""
    pooled = {}
    for dataset, table in POOLED_FROM_TABLE.items():
        found = [s for s in (row_stats(table, r, metrics) for r in paper_rows(paper, table)) if s is not None]
        pooled[dataset] = pooled_std(found)
    claims = [_claim1(metrics, pooled, paper)]
    for claim in CLAIMS[1:]:
        comparisons = []
        for comp in claim.comparisons:
            (ta, ia), (tb, ib) = comp.better, comp.worse
            better, worse = paper_rows(paper, ta)[ia], paper_rows(paper, tb)[ib]
            a, b = row_stats(ta, better, metrics), row_stats(tb, worse, metrics)
            pa = paper[f"table{ta}"]["rows"][ia].get(METRIC)
            pb = paper[f"table{tb}"]["rows"][ib].get(METRIC)
            entry = {"label": comp.label, "better": better, "worse": worse,
                     "paper_diff": None if pa is None or pb is None else round(pa - pb, 2)}
            if a is None or b is None:
                entry["verdict"] = MISSING
            else:
                entry.update(compare(a, b, pooled))
            comparisons.append(entry)
        claims.append({"number": claim.number, "text": claim.text,
                       "verdict": _overall([c["verdict"] for c in comparisons]), "comparisons": comparisons})
    return {"profile": profile, "metric": METRIC, "rule": RULE,
            "pooled_seed_std": {k: None if v is None else round(v, 3) for k, v in pooled.items()},
            "seeds_per_row": seeds_per_row(claims), "claims": claims}


def seeds_per_row(claims: list[dict[str, Any]]) -> dict[str, int]:
    """How many seeds each row a claim compares was trained with (rows with metrics only)."""
    counts: dict[str, int] = {}
    for claim in claims:
        for c in claim["comparisons"]:
            for side in ("better", "worse"):
                if f"{side}_seeds" in c:
                    counts[c[side]] = c[f"{side}_seeds"]
    return dict(sorted(counts.items()))


def _num(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def claims_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The claims table: one line per comparison, then a closing line with each claim's verdict."""
    records = []
    for claim in report["claims"]:
        comps = claim["comparisons"] or [{"label": "—", "verdict": claim["verdict"]}]
        for i, c in enumerate(comps):
            rows = f"{c['label']}: `{c['better']}` vs `{c['worse']}`" if "better" in c else c["label"]
            repro = "—" if c.get("diff") is None else f"{_num(c['diff'])} ± {_num(c.get('se'), signed=False)}"
            records.append({"#": str(claim["number"]) if i == 0 else "", "Claim": claim["text"] if i == 0 else "",
                            "Rows compared": rows, "Paper Δ PQ": _num(c.get("paper_diff")),
                            "Reproduced Δ PQ ± SE": repro, "Seeds": c.get("seeds", "—"), "Verdict": c["verdict"]})
        records.append({"#": "", "Claim": f"**Claim {claim['number']}**", "Rows compared": "", "Paper Δ PQ": "",
                        "Reproduced Δ PQ ± SE": "", "Seeds": "", "Verdict": f"**{claim['verdict']}**"})
    return pd.DataFrame.from_records(records, columns=list(CLAIMS_COLUMNS))


def _seed_counts_line(counts: dict[str, int]) -> list[str]:
    """The rows grouped by their number of seeds, e.g. 'Rows with a single seed: `a`, `b`. With 3 seeds: `c`.'"""
    if not counts:
        return []
    groups = {n: [row for row, k in counts.items() if k == n] for n in sorted(set(counts.values()))}
    parts = [("Rows with a single seed" if n == 1 else f"Rows with {n} seeds") + ": " +
             ", ".join(f"`{row}`" for row in rows) + "." for n, rows in groups.items()]
    return [" ".join(parts), ""]


def render_claims(report: dict[str, Any]) -> str:
    pooled = ", ".join(f"{k}: {_num(v, signed=False)}" for k, v in report["pooled_seed_std"].items())
    table = claims_frame(report).map(lambda text: text.replace("|", r"\|"))
    lines = [f"# The paper's claims, checked (profile: {report['profile']})", "",
             f"**Verdict rule (fixed before the numbers were seen).** {report['rule']}", "",
             f"Pooled seed standard deviation of PQ used for single-seed rows: {pooled}.", "",
             *_seed_counts_line(report.get("seeds_per_row") or {}),
             table.to_markdown(index=False, disable_numparse=True)]
    for claim in report["claims"]:
        for c in claim["comparisons"]:
            if c.get("schedules"):
                lines += ["", f"Claim {claim['number']} compares rows trained for different lengths: `{c['better']}` "
                              f"vs `{c['worse']}`, {c['schedules']}; its difference includes the longer "
                              "schedule's, so it is not resolved at this scale whatever its size."]
    if report["claims"] and report["claims"][0].get("pq_by_lambda"):
        by = report["claims"][0]["pq_by_lambda"]
        lines += ["", "Claim 1, mean PQ by lambda: " + ", ".join(f"λ={k}: {v:.1f}" for k, v in by.items()) + "."]
    return "\n".join(lines) + "\n"


def generate_claims(profile: str, paper: dict[str, Any], lambda_metrics: dict[str, dict],
                    val_metrics: dict[str, dict], testdev_metrics: dict[str, dict]) -> tuple[str, dict[str, Any]]:
    """Kedro node: the claims report from the row metrics -> (markdown, the report as data)."""
    metrics = RowMetrics(lambda_metrics, val_metrics, testdev_metrics)
    report = build_claims(check_profile(profile), metrics, check_paper_tables(paper))
    return render_claims(report), report
