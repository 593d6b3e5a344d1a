"""The claims report: hand-made row metrics -> differences, standard errors and verdicts by the fixed rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spatialflow_repro.pipelines.tables import claims
from spatialflow.utils.yaml_io import read_yaml
from spatialflow_repro.pipelines.tables import nodes
from test_tables_nodes import PAPER_TABLES, md_cells, metrics_in, seed_entry, write_metrics

PAPER = read_yaml(PAPER_TABLES)


def seeds(*pqs: float) -> list[dict]:
    return [seed_entry(i, f"run-{i}", pq, pq, pq) for i, pq in enumerate(pqs)]


def write(root: Path, row: str, *pqs: float, kind: str = "val", dataset: str = "coco") -> None:
    write_metrics(root, row, seeds(*pqs), kind=kind, dataset=dataset)


def test_verdict_rule_is_two_standard_errors_with_the_papers_sign():
    assert claims.verdict(2.1, 1.0) == claims.REPRODUCED
    assert claims.verdict(1.9, 1.0) == claims.UNRESOLVED
    assert claims.verdict(-2.1, 1.0) == claims.CONTRADICTED
    assert claims.verdict(5.0, None) == claims.UNRESOLVED


def test_table2_claims_with_three_seeds(tmp_path):
    # baseline 40, 41, 42 (mean 41, s 1); +subnets 44, 45, 46 (mean 45, s 1):
    # diff 4, SE sqrt(1/3 + 1/3) = 0.816 -> 4 > 1.63: reproduced.
    write(tmp_path, "t2_baseline", 40, 41, 42)
    write(tmp_path, "t2_subnets", 44, 45, 46)
    # +reg_cls 44.5, 45.5, 46.5 (mean 45.5): diff 0.5 < 1.63 -> not resolved
    write(tmp_path, "t2_reg_cls", 44.5, 45.5, 46.5)
    # +reg_stuff 40, 41, 42: diff -4.5 -> contradicted
    write(tmp_path, "t2_reg_stuff", 40, 41, 42)
    report = claims.build_claims("tiny", metrics_in(tmp_path), PAPER)
    by = {c["number"]: c for c in report["claims"]}
    two = by[2]["comparisons"][0]
    assert two["diff"] == 4.0 and two["se"] == pytest.approx(round(math.sqrt(2 / 3), 2))
    assert two["verdict"] == claims.REPRODUCED and by[2]["verdict"] == claims.REPRODUCED
    assert two["paper_diff"] == pytest.approx(0.6)  # 40.3 - 39.7
    flows = by[3]["comparisons"]
    assert [c["verdict"] for c in flows[:2]] == [claims.UNRESOLVED, claims.CONTRADICTED]
    assert flows[2]["verdict"] == claims.MISSING  # t2_reg_mask did not run
    assert by[3]["verdict"] == claims.MISSING
    assert by[7]["verdict"] == claims.MISSING
    assert report["pooled_seed_std"]["coco"] == pytest.approx(1.0)


def test_single_seed_rows_use_the_pooled_spread_of_the_same_dataset(tmp_path):
    # Table 2 rows on COCO-like data: s = 1 in each -> pooled 1.0.
    write(tmp_path, "t2_baseline", 40, 41, 42)
    write(tmp_path, "t2_spatialflow", 41, 42, 43)
    # Table 4, one seed each: R101 @ 600 = 45, R50 @ 600 = 42 -> diff 3, SE sqrt(1 + 1) = 1.41 -> 3 > 2.83
    write(tmp_path, "t4_r101_600", 45)
    write(tmp_path, "t4_r50_600", 42)
    report = claims.build_claims("tiny", metrics_in(tmp_path), PAPER)
    five = {c["label"]: c for c in report["claims"][4]["comparisons"]}
    first = five["R101 vs R50 at 600"]
    assert first["diff"] == 3.0 and first["se"] == pytest.approx(1.41)
    assert first["verdict"] == claims.REPRODUCED and first["uses_pooled_spread"]
    assert first["seeds"] == "1 seed (pooled s) vs 1 seed (pooled s)"
    # 800 vs 600 with R50: t2_spatialflow (mean 42, 3 seeds, s 1) vs t4_r50_600 (42): diff 0 -> not resolved
    assert five["800 vs 600 with R50"]["verdict"] == claims.UNRESOLVED


def test_claim1_interior_optimum(tmp_path):
    rows = nodes.paper_rows(PAPER, 1)
    # ends at 40 (+-1); the best interior lambda (0.4) at 45 -> beats both by 5 > 2 * 0.816: reproduced
    values = {rows[0]: 40, rows[-1]: 40, rows[3]: 45}
    for row in rows:
        base = values.get(row, 42)
        write(tmp_path, row, base - 1, base, base + 1, kind="lambda")
    report = claims.build_claims("tiny", metrics_in(tmp_path), PAPER)
    one = report["claims"][0]
    assert one["verdict"] == claims.REPRODUCED
    assert [c["worse"] for c in one["comparisons"]] == [rows[0], rows[-1]]
    assert one["comparisons"][0]["label"] == "best interior lambda 0.4 vs lambda 1"
    assert one["pq_by_lambda"]["0.4"] == 45.0
    # an end far above every interior lambda: contradicted
    write(tmp_path, rows[0], 59, 60, 61, kind="lambda")
    assert claims.build_claims("tiny", metrics_in(tmp_path), PAPER)["claims"][0]["verdict"] == claims.CONTRADICTED


def test_report_files_state_the_rule_and_every_claim(tmp_path):
    write(tmp_path, "t2_baseline", 40, 41, 42)
    write(tmp_path, "t2_subnets", 44, 45, 46)
    text, report = claims.generate_claims("tiny", PAPER, *metrics_in(tmp_path))
    assert "Verdict rule (fixed before the numbers were seen)" in text and "2 SE" in text
    assert len(report["claims"]) == 7
    cells = md_cells(text)
    assert cells[0] == ["#", "Claim", "Rows compared", "Paper Δ PQ", "Reproduced Δ PQ ± SE", "Seeds", "Verdict"]
    # claim 1: no lambda rows -> one "—" line and the closing line; claim 2: diff 45 - 41 = +4.0,
    # SE sqrt(1/3 + 1/3) = 0.82 -> "+4.0 ± 0.8", paper 40.3 - 39.7 = +0.6
    assert cells[1] == ["1", claims.CLAIMS[0].text, "—", "—", "—", "—", claims.MISSING]
    assert cells[2] == ["", "**Claim 1**", "", "", "", "", f"**{claims.MISSING}**"]
    assert cells[3] == ["2", claims.CLAIMS[1].text, "+ sub-nets vs baseline: `t2_subnets` vs `t2_baseline`",
                        "+0.6", "+4.0 ± 0.8", "3 seeds vs 3 seeds", claims.REPRODUCED]
    assert cells[4] == ["", "**Claim 2**", "", "", "", "", "**reproduced**"]
    # claim 3: four flows, none run -> four lines and the closing line
    assert [row[2] for row in cells[5:9]] == ["+ reg-cls flow: `t2_reg_cls` vs `t2_subnets`",
                                              "+ reg-stuff flow: `t2_reg_stuff` vs `t2_reg_cls`",
                                              "+ reg-mask flow: `t2_reg_mask` vs `t2_reg_stuff`",
                                              "+ stuff-mask flow: `t2_spatialflow` vs `t2_reg_mask`"]
    assert cells[5][4:] == ["—", "—", claims.MISSING]


def test_report_says_which_rows_have_a_single_seed(tmp_path):
    write(tmp_path, "t2_baseline", 40, 41, 42)
    write(tmp_path, "t2_spatialflow", 41, 42, 43)
    write(tmp_path, "t4_r101_600", 45)
    write(tmp_path, "t4_r50_600", 42)
    text, report = claims.generate_claims("tiny", PAPER, *metrics_in(tmp_path))
    assert report["seeds_per_row"] == {"t2_baseline": 3, "t2_spatialflow": 3, "t4_r101_600": 1, "t4_r50_600": 1}
    assert ("Rows with a single seed: `t4_r101_600`, `t4_r50_600`. "
            "Rows with 3 seeds: `t2_baseline`, `t2_spatialflow`.") in text


def test_report_names_a_comparison_of_rows_trained_for_different_lengths(tmp_path):
    """Table 6's tiny row trains 3600 iterations, Table 5's 1200: claim 6 says its difference includes that."""
    write(tmp_path, "t2_baseline", 40, 41, 42)
    write(tmp_path, "t2_spatialflow", 41, 42, 43)
    iterations = {"t6_r101_dcn": 3600, "t4_r101_800": 1200, "t4_r101_600": 1200}
    for row, pq in (("t6_r101_dcn", 50), ("t4_r101_800", 44), ("t4_r101_600", 43)):
        write_metrics(tmp_path, row, seeds(pq), kind="testdev", dataset="coco",
                      schedule={"length": iterations[row], "unit": "iteration"})
    text, report = claims.generate_claims("tiny", PAPER, *metrics_in(tmp_path))
    six = report["claims"][5]["comparisons"][0]
    assert (six["better"], six["worse"], six["diff"]) == ("t6_r101_dcn", "t4_r101_800", 6.0)
    assert six["schedules"] == "3600 iterations vs 1200 iterations"
    # diff 6, SE sqrt(1 + 1) = 1.41 with the pooled s of 1: beyond 2 SE, yet a confounded comparison stays
    # unresolved
    assert six["verdict"] == claims.UNRESOLVED and report["claims"][5]["verdict"] == claims.UNRESOLVED
    assert ("Claim 6 compares rows trained for different lengths: `t6_r101_dcn` vs `t4_r101_800`, "
            "3600 iterations vs 1200 iterations; its difference includes the longer schedule's, so it is not "
            "resolved at this scale whatever its size.") in text
    assert not any("schedules" in c for claim in report["claims"][1:5] for c in claim["comparisons"])
    assert text.count("compares rows trained for different lengths") == 1
