"""Tables 1-7: hand-made row metrics -> exact markdown / CSV / LaTeX and summary data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.io import DatasetError

from helpers.paths import REPO_ROOT
from spatialflow.errors import DataError
from spatialflow.utils.yaml_io import read_yaml
from spatialflow_repro.datasets import JSONFolderDataset, TextFolderDataset
from spatialflow_repro.pipelines.tables import nodes

PAPER_TABLES = REPO_ROOT / "src/spatialflow_repro/reference/paper_tables.yaml"

RAN = "ResNet-18 @ 96 px stands for ResNet-50 @ 800 px"


def seed_entry(seed: int, run_id: str, pq: float, pq_th: float, pq_st: float,
               sq: float = 70.0, rq: float = 50.0) -> dict:
    return {"seed": seed, "mlflow_run_id": run_id,
            "metrics": {"All": {"pq": pq, "sq": sq, "rq": rq, "n": 3},
                        "Things": {"pq": pq_th, "sq": sq, "rq": rq, "n": 2},
                        "Stuff": {"pq": pq_st, "sq": sq, "rq": rq, "n": 1}}}


def write_metrics(root: Path, row: str, per_seed: list[dict], profile: str = "tiny",
                  kind: str = "val", **extra) -> None:
    """<root>/<kind>/<row>.json as the train / evaluate pipelines write it."""
    data = {"row": row, "profile": profile, "ran": RAN, "has_ground_truth": True,
            "seeds": [s["seed"] for s in per_seed], "per_seed": per_seed, **extra}
    (root / kind).mkdir(parents=True, exist_ok=True)
    (root / kind / f"{row}.json").write_text(json.dumps(data), encoding="utf-8")


def metrics_in(root: Path) -> nodes.RowMetrics:
    """The row metrics under ``root`` (``<root>/<kind>/<row>.json``), loaded as the catalog loads them."""
    return nodes.RowMetrics(*(JSONFolderDataset(str(root / kind), allow_missing=True).load()
                              for kind in ("lambda", "val", "testdev")))


def write_tables(summary: dict, out: Path, paper: dict) -> None:
    TextFolderDataset(str(out)).save(nodes.table_files(summary, paper))


def md_cells(markdown: str) -> list[list[str]]:
    """The cells of the pipe table in ``markdown`` (header first, the |:---| rule left out), stripped."""
    rows = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows]


@pytest.fixture(scope="module")
def paper() -> dict:
    return nodes.check_paper_tables(read_yaml(PAPER_TABLES))


def test_table2_markdown_is_exact(tmp_path: Path, paper: dict) -> None:
    write_metrics(tmp_path, "t2_baseline", [seed_entry(0, "run-a", 41.25, 45.0, 30.04)])
    # two seeds: PQ 40.0, 42.0 -> mean 41.0, sample std sqrt((1 + 1) / (2 - 1)) = 1.414 -> "41.0 ± 1.4"
    # PQ_th 46.0, 47.0 -> 46.5 ± sqrt((0.25 + 0.25) / 1) = 0.707 -> "46.5 ± 0.7"
    # PQ_st 31.0, 31.0 -> "31.0 ± 0.0"
    write_metrics(tmp_path, "t2_subnets", [seed_entry(0, "run-b", 40.0, 46.0, 31.0),
                                            seed_entry(1, "run-c", 42.0, 47.0, 31.0)])
    write_metrics(tmp_path, "t2_reg_cls", [seed_entry(0, "run-x", 1.0, 1.0, 1.0)], profile="coco")
    # what the train pipeline writes for a row its profile skips
    (tmp_path / "val" / "t2_reg_stuff.json").write_text(json.dumps(
        {"row": "t2_reg_stuff", "profile": "tiny", "tables": [2], "skipped": "not run in profile tiny (...)"}))
    table = nodes.build_table(2, paper, "tiny", metrics_in(tmp_path))
    # baseline: 41.25 -> "41.2" (exact binary half, rounds to even); diff 41.2 - 39.7 = +1.5;
    # PQ_th 45.0 - 46.0 = -1.0; PQ_st 30.04 -> "30.0", 30.0 - 30.2 = -0.2
    # subnets: 41.0 - 40.3 = +0.7; 46.5 - 46.2 = +0.3; 31.0 - 31.4 = -0.4
    md = nodes.render_markdown(table)
    lines = md.splitlines()
    assert lines[:2] == ["# Table 2: Contribution of each component, COCO val, ResNet-50, 800px (profile: tiny)", ""]
    assert lines[-2:] == ["", "Split: val. Reproduced values are the mean over seeds (± sample standard deviation "
                              "with more than one seed); Δ = reproduced − published, of the displayed values."]
    assert md_cells(md) == [
        ["Model", "Row", "PQ", "PQ_th", "PQ_st", "PQ (paper)", "PQ_th (paper)", "PQ_st (paper)",
         "Δ PQ", "Δ PQ_th", "Δ PQ_st", "Ran", "MLflow run"],
        ["baseline", "t2_baseline", "41.2", "45.0", "30.0", "39.7", "46.0", "30.2", "+1.5", "-1.0", "-0.2",
         RAN, "run-a"],
        ["+ stuff + mask sub-net", "t2_subnets", "41.0 ± 1.4", "46.5 ± 0.7", "31.0 ± 0.0", "40.3", "46.2", "31.4",
         "+0.7", "+0.3", "-0.4", RAN, "run-b, run-c"],
        ["+ reg-cls flow", "t2_reg_cls", "not run in profile tiny", "", "", "40.5", "46.6", "31.4"] + [""] * 5,
        ["+ reg-stuff flow", "t2_reg_stuff", "not run in profile tiny", "", "", "40.7", "46.3", "32.0"] + [""] * 5,
        ["+ reg-mask flow", "t2_reg_mask", "not run in profile tiny", "", "", "40.7", "46.4", "31.8"] + [""] * 5,
        ["+ stuff-mask flow", "t2_spatialflow", "not run in profile tiny", "", "", "40.9", "46.8", "31.9"] + [""] * 5,
    ]
    assert "PQ (box fill)" not in md  # no row carries a box_fill block


def test_multi_seed_summary_values(tmp_path: Path, paper: dict) -> None:
    # PQ 40.0, 41.0, 42.5: mean 123.5 / 3 = 41.1667; deviations -1.1667, -0.1667, 1.3333;
    # squares 1.3611 + 0.0278 + 1.7778 = 3.1667; / 2 = 1.5833; sqrt = 1.2583
    write_metrics(tmp_path, "t4_r50_600", [seed_entry(0, "a", 40.0, 45.0, 30.0),
                                            seed_entry(1, "b", 41.0, 45.0, 30.0),
                                            seed_entry(2, "c", 42.5, 45.0, 30.0)])
    row = nodes.build_table(4, paper, "tiny", metrics_in(tmp_path))["rows"][0]
    assert row["labels"] == {"backbone": "ResNet-50", "size": 600}
    assert row["status"] == "reproduced" and row["seeds"] == [0, 1, 2]
    assert row["reproduced"]["pq"] == pytest.approx(41.1667, abs=1e-4)
    assert row["reproduced_std"]["pq"] == pytest.approx(1.2583, abs=1e-4)
    assert row["reproduced_std"]["pq_th"] == 0.0
    assert row["diff"]["pq"] == pytest.approx(41.1667 - 40.3, abs=1e-4)  # paper (R50, 600) = 40.3
    assert nodes.fmt_mean_std(row["reproduced"]["pq"], row["reproduced_std"]["pq"]) == "41.2 ± 1.3"
    assert row["mlflow_run_ids"] == ["a", "b", "c"]


def test_table4_maps_r50_800_to_the_table2_spatialflow_row(tmp_path: Path, paper: dict) -> None:
    write_metrics(tmp_path, "t2_spatialflow", [seed_entry(0, "sf", 42.0, 47.0, 33.0)])
    rows = nodes.build_table(4, paper, "tiny", metrics_in(tmp_path))["rows"]
    assert [r["row"] for r in rows] == ["t4_r50_600", "t4_r101_600", "t2_spatialflow", "t4_r101_800"]
    assert [r["status"] for r in rows] == ["not_run", "not_run", "reproduced", "not_run"]
    assert rows[2]["labels"] == {"backbone": "ResNet-50", "size": 800}


def test_published_peer_rows_and_test_dev_submission(tmp_path: Path, paper: dict) -> None:
    write_metrics(tmp_path, "t4_r101_600", [seed_entry(0, "r6", 30.0, 35.0, 20.0, sq=71.0, rq=40.0)],
                  kind="testdev")
    write_metrics(tmp_path, "t4_r101_800", [{"seed": 0, "mlflow_run_id": "r8"}], kind="testdev",
                  has_ground_truth=False, summary=None, submission="data/07_model_output/t4_r101_800/sub.zip")
    table = nodes.build_table(5, paper, "tiny", metrics_in(tmp_path))
    cells = md_cells(nodes.render_markdown(table))
    assert cells[1] == (["JSIS-Net", "ResNet-50", "400 x 400", "published"] + [""] * 5
                        + ["27.2", "29.6", "23.4", "71.9", "35.9"] + [""] * 7)
    # PanopticFPN has no published SQ / RQ: empty cells
    assert cells[3] == (["PanopticFPN", "ResNet-101-FPN", "[640, 800]", "published"] + [""] * 5
                        + ["40.9", "48.3", "29.7"] + [""] * 9)
    # 30.0 - 41.8 = -11.8; 35.0 - 47.6 = -12.6; 20.0 - 33.0 = -13.0; 71.0 - 79.2 = -8.2; 40.0 - 51.0 = -11.0
    assert cells[5] == ["SpatialFlow", "ResNet-101-FPN", "600 x 1000", "t4_r101_600", "30.0", "35.0", "20.0",
                        "71.0", "40.0", "41.8", "47.6", "33.0", "79.2", "51.0", "-11.8", "-12.6", "-13.0", "-8.2",
                        "-11.0", RAN, "r6"]
    assert cells[6] == (["SpatialFlow", "ResNet-101-FPN", "800 x 1333", "t4_r101_800",
                         "submitted: data/07_model_output/t4_r101_800/sub.zip", "", "", "", "",
                         "42.8", "49.1", "33.1", "78.9", "52.1"] + [""] * 5 + [RAN, "r8"])
    assert [r["status"] for r in table["rows"]] == ["published"] * 4 + ["reproduced", "submitted"]


def test_table7_peer_rows_and_missing_rows(tmp_path: Path, paper: dict) -> None:
    table = nodes.build_table(7, paper, "coco", metrics_in(tmp_path))
    assert [r["labels"]["model"] for r in table["rows"]] == [
        "PanopticFPN-101", "AUNet-101", "TASCNet-101-COCO", "UPSNet-101-COCO-M",
        "SpatialFlow-101", "SpatialFlow-101-COCO-M"]
    assert [r["row"] for r in table["rows"]][4:] == ["t7_r101", "t7_r101_coco"]
    assert [r["note"] for r in table["rows"]][4:] == ["not run in profile coco"] * 2
    assert table["caption"] == "Comparison on Cityscapes val (profile: coco)"


def test_table1_marks_the_selected_weight_and_writes_csv(tmp_path: Path, paper: dict) -> None:
    write_metrics(tmp_path, "t1_lambda_0_25", [seed_entry(0, "l25", 39.31, 45.0, 30.5)], kind="lambda")
    search = tmp_path / "lambda_search.json"
    search.write_text(json.dumps({"selected_stuff_loss_weight": 0.25, "metric": "pq", "candidates": []}))
    summary = nodes.build_summary("tiny", paper, metrics_in(tmp_path), json.loads(search.read_text()))
    table = summary["tables"]["table1"]
    assert [r["selected"] for r in table["rows"]] == [False] * 5 + [True, False, False]
    md = nodes.render_markdown(table)
    # 39.31 -> "39.3", 39.3 - 39.3 = +0.0 (never "-0.0")
    assert md_cells(md)[6] == ["0.25 (selected)", "t1_lambda_0_25", "39.3", "45.0", "30.5", "39.3", "45.1", "30.5",
                               "+0.0", "-0.1", "+0.0", RAN, "l25"]
    assert md.endswith("Selected λ (best PQ on val): 0.25.\n")
    csv_lines = nodes.render_csv(table).splitlines()
    assert csv_lines[0] == ("lambda,row,status,note,selected,pq,pq_std,paper_pq,diff_pq,pq_th,pq_th_std,paper_pq_th,"
                            "diff_pq_th,pq_st,pq_st_std,paper_pq_st,diff_pq_st,ran,mlflow_run_ids")
    # diff 39.31 - 39.3 = 0.01; 45.0 - 45.1 = -0.1; 30.5 - 30.5 = 0.0
    assert csv_lines[6] == ("0.25,t1_lambda_0_25,reproduced,,True,39.31,,39.3,0.01,45.0,,45.1,-0.1,30.5,,30.5,0.0,"
                            f"{RAN},l25")
    assert csv_lines[1] == "1.0,t1_lambda_1_00,not_run,not run in profile tiny,False,,,37.5,,,,41.8,,,,30.9,,,"


def test_latex_uses_booktabs_and_escapes(tmp_path: Path, paper: dict) -> None:
    write_metrics(tmp_path, "t2_subnets", [seed_entry(0, "b", 40.0, 46.0, 31.0), seed_entry(1, "c", 42.0, 47.0, 31.0)],
                  profile="my_profile")
    tex = nodes.render_latex(nodes.build_table(2, paper, "my_profile", metrics_in(tmp_path)))
    assert r"\caption{Contribution of each component, COCO val, ResNet-50, 800px (profile: my\_profile)}" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert (r"+ stuff + mask sub-net & 41.0 $\pm$ 1.4 & 46.5 $\pm$ 0.7 & 31.0 $\pm$ 0.0 & 40.3 & 46.2 & 31.4"
            r" & +0.7 & +0.3 & -0.4 \\") in tex
    assert r"baseline & not run in profile my\_profile &  &  & 39.7 & 46.0 & 30.2 &  &  &  \\" in tex
    assert r"\begin{tabular}{lccccccccc}" in tex and r"\label{tab:table2}" in tex
    assert (r" & \multicolumn{3}{c}{Reproduced} & \multicolumn{3}{c}{Paper} & \multicolumn{3}{c}{$\Delta$} \\"
            in tex)
    assert r"Model & PQ & PQ\textsuperscript{Th} & PQ\textsuperscript{St} & PQ & " in tex
    assert nodes.latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


def test_write_tables_is_byte_identical_on_rerun(tmp_path: Path, paper: dict) -> None:
    metrics_dir = tmp_path / "metrics"
    write_metrics(metrics_dir, "t2_baseline", [seed_entry(0, "a", 41.0, 45.0, 30.0)])
    out = tmp_path / "tables"
    write_tables(nodes.build_summary("tiny", paper, metrics_in(metrics_dir), None), out, paper)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    write_tables(nodes.build_summary("tiny", paper, metrics_in(metrics_dir), None), out, paper)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(first) == sorted([f"table{n}.{ext}" for n in range(1, 8) for ext in ("md", "csv", "tex")]
                                   + ["index.md", "summary.json"])
    index = first["index.md"].decode()
    assert ("- [Table 2](table2.md) ([csv](table2.csv), [tex](table2.tex)): Contribution of each component, "
            "COCO val, ResNet-50, 800px (val) — 1 of 6 rows reproduced.") in index
    assert "— 0 of 2 rows reproduced, 4 published peer rows." in index
    summary = json.loads(first["summary.json"])
    assert summary["tables"]["table2"]["rows"][0]["reproduced"] == {"pq": 41.0, "pq_th": 45.0, "pq_st": 30.0}
    assert "No lambda search result yet." in first["table1.md"].decode()


def test_bad_metrics_name_the_file_or_the_row(tmp_path: Path, paper: dict) -> None:
    (tmp_path / "val").mkdir()
    bad = tmp_path / "val" / "t2_baseline.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError) as failed:  # Kedro wraps what a dataset raises; the cause names the file
        metrics_in(tmp_path)
    assert isinstance(failed.value.__cause__, DataError)
    assert str(failed.value.__cause__).endswith("val/t2_baseline.json: not valid JSON (Expecting property name "
                                                "enclosed in double quotes: line 1 column 2 (char 1))")
    bad.write_text(json.dumps({"profile": "tiny", "per_seed": [{"seed": 0, "metrics": {"All": {}}}]}))
    with pytest.raises(DataError, match="val metrics of t2_baseline: per_seed entry of seed 0 lacks"):
        nodes.build_table(2, paper, "tiny", metrics_in(tmp_path))


def test_each_paper_row_names_our_row_or_is_published(paper: dict) -> None:
    assert nodes.paper_rows(paper, 4) == ["t4_r50_600", "t4_r101_600", "t2_spatialflow", "t4_r101_800"]
    assert nodes.paper_rows(paper, 6) == [None] * 5 + ["t6_r101_dcn"]
    rows = [dict(r) for r in paper["table2"]["rows"]]
    del rows[1]["row"]
    with pytest.raises(DataError, match="table2 row 2: name the project row that reproduces it"):
        nodes.check_paper_tables({**paper, "table2": {"caption": "x", "rows": rows}})
    rows[1].update(row="t2_subnets", published=True)
    with pytest.raises(DataError, match="table2 row 2: .* not both"):
        nodes.check_paper_tables({**paper, "table2": {"caption": "x", "rows": rows}})


def test_every_reproducing_row_is_a_row_of_params_yaml(paper: dict) -> None:
    params = read_yaml(PAPER_TABLES.parents[3] / "params.yaml")
    ours = {*params["search_rows"], *params["rows"], *params["pretrained_rows"]}
    named = {row for n in nodes.table_numbers(paper) for row in nodes.paper_rows(paper, n) if row}
    assert named == ours


def box_fill_block(*pqs: float) -> dict:
    """The evaluate pipeline's ``box_fill`` block: merge settings, one entry per seed with All / Things / Stuff
    metrics (the shape of the main ones) and their summary."""
    per_seed = [{"seed": i, "predictions": f"p{i}/box_fill",
                 "metrics": {"All": {"pq": pq, "sq": 70.0, "rq": 50.0, "n": 3}, "Things": {"pq": pq, "n": 2},
                             "Stuff": {"pq": pq, "n": 1}}} for i, pq in enumerate(pqs)]
    return {"merge": {"box_fill": True, "box_fill_ratio": 0.5}, "per_seed": per_seed,
            "summary": {"pq": sum(pqs) / len(pqs)}, "summary_std": {"pq": 0.0}}


def test_box_fill_column_in_tables_2_and_3_only_when_present(tmp_path: Path, paper: dict) -> None:
    # t2_baseline: box fill PQ 42.0 and 44.0 -> mean 43.0, sample std sqrt((1 + 1) / 1) = 1.414 -> "43.0 ± 1.4"
    write_metrics(tmp_path, "t2_baseline",
                  [seed_entry(0, "a", 40.0, 45.0, 30.0), seed_entry(1, "b", 40.0, 45.0, 30.0)],
                  box_fill=box_fill_block(42.0, 44.0))
    # t2_subnets: one seed -> "41.5" (no spread shown); t2_reg_cls: box_fill null (main merge fills boxes)
    write_metrics(tmp_path, "t2_subnets", [seed_entry(0, "c", 41.0, 46.0, 31.0)], box_fill=box_fill_block(41.5))
    write_metrics(tmp_path, "t2_reg_cls", [seed_entry(0, "d", 41.0, 46.0, 31.0)], box_fill=None)
    table = nodes.build_table(2, paper, "tiny", metrics_in(tmp_path))
    assert table["box_fill"] is True
    assert table["rows"][0]["box_fill"] == {"pq": 43.0, "pq_std": pytest.approx(1.4142, abs=1e-4)}
    assert table["rows"][1]["box_fill"] == {"pq": 41.5, "pq_std": None}

    cells = md_cells(nodes.render_markdown(table))
    assert cells[0][11:] == ["PQ (box fill)", "Ran", "MLflow run"]
    assert [row[11] for row in cells[1:]] == ["43.0 ± 1.4", "41.5", "", "", "", ""]

    csv_lines = nodes.render_csv(table).splitlines()
    assert csv_lines[0].endswith(",diff_pq_st,pq_box_fill,pq_box_fill_std,ran,mlflow_run_ids")
    assert csv_lines[1].endswith(f",43.0,1.414,{RAN},a;b")
    assert csv_lines[2].endswith(f",41.5,,{RAN},c")

    tex = nodes.render_latex(table)
    assert r"\begin{tabular}{lcccccccccc}" in tex and r" & Box fill \\" in tex
    assert r"baseline & 40.0 $\pm$ 0.0 & 45.0 $\pm$ 0.0 & 30.0 $\pm$ 0.0 & 39.7 & 46.0 & 30.2 & +0.3 & -1.0 & -0.2" \
           r" & 43.0 $\pm$ 1.4 \\" in tex

    # Table 3 without any block: no column; Table 4 reads t2_spatialflow's val file but never shows box fill
    write_metrics(tmp_path, "t3_baseline", [seed_entry(0, "e", 50.0, 45.0, 55.0)])
    write_metrics(tmp_path, "t2_spatialflow", [seed_entry(0, "f", 40.0, 45.0, 30.0)], box_fill=box_fill_block(1.0))
    for number in (3, 4):
        table = nodes.build_table(number, paper, "tiny", metrics_in(tmp_path))
        assert table["box_fill"] is False
        assert "PQ (box fill)" not in nodes.render_markdown(table)
        assert "box_fill" not in nodes.render_csv(table) and "Box fill" not in nodes.render_latex(table)


def test_box_fill_block_without_all_pq_names_the_row(tmp_path: Path, paper: dict) -> None:
    block = box_fill_block(40.0)
    block["per_seed"][0]["metrics"] = {"All": {}}
    write_metrics(tmp_path, "t3_baseline", [seed_entry(0, "a", 50.0, 45.0, 55.0)], box_fill=block)
    with pytest.raises(DataError, match="val metrics of t3_baseline: box_fill entry of seed 0 lacks metrics All pq"):
        nodes.build_table(3, paper, "tiny", metrics_in(tmp_path))
