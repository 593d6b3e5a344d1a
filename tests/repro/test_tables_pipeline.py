"""The tables pipeline wiring: a Kedro run over row metrics writes every table file and the claims report."""

from __future__ import annotations

import json
from pathlib import Path

from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from spatialflow_repro.datasets import JSONDataset, JSONFolderDataset, TextDataset, TextFolderDataset, YAMLDataset
from spatialflow_repro.pipelines.tables import create_pipeline
from test_tables_nodes import PAPER_TABLES


def test_kedro_run_writes_tables(tmp_path: Path) -> None:
    val = tmp_path / "metrics" / "val"
    val.mkdir(parents=True)
    metrics = {"All": {"pq": 10.0, "sq": 60.0, "rq": 16.0}, "Things": {"pq": 12.0}, "Stuff": {"pq": 7.0}}
    val.joinpath("t2_baseline.json").write_text(json.dumps({
        "row": "t2_baseline", "profile": "tiny", "ran": "tiny run", "has_ground_truth": True, "seeds": [0],
        "per_seed": [{"seed": 0, "mlflow_run_id": "abc", "metrics": metrics}]}))
    out = tmp_path / "tables"
    catalog = DataCatalog({
        "params:profile": MemoryDataset("tiny"),
        "paper_tables": YAMLDataset(str(PAPER_TABLES)),
        **{f"{kind}_row_metrics": JSONFolderDataset(str(tmp_path / "metrics" / kind), allow_missing=True)
           for kind in ("lambda", "val", "testdev")},
        "lambda_search": JSONDataset(str(tmp_path / "lambda_search.json"), allow_missing=True),
        "reproduced_tables": TextFolderDataset(str(out)),
        "claims_markdown": TextDataset(str(tmp_path / "claims.md")),
        "claims_report": JSONDataset(str(tmp_path / "claims.json")),
    })
    pipeline = create_pipeline()
    assert pipeline.inputs() == {"params:profile", "paper_tables", "lambda_row_metrics", "val_row_metrics",
                                 "testdev_row_metrics", "lambda_search"}
    SequentialRunner().run(pipeline, catalog)
    assert len(list(out.glob("table*.md"))) == 7
    summary = json.loads((out / "summary.json").read_text())
    first = summary["tables"]["table2"]["rows"][0]
    # PQ 10.0 - published 39.7 = -29.7; PQ_th 12.0 - 46.0 = -34.0; PQ_st 7.0 - 30.2 = -23.2
    assert first["diff"] == {"pq": -29.7, "pq_th": -34.0, "pq_st": -23.2}
    first_line = next(line for line in (out / "table2.md").read_text().splitlines() if "t2_baseline" in line)
    assert [cell.strip() for cell in first_line.strip("|").split(" | ")] == [
        "baseline", "t2_baseline", "10.0", "12.0", "7.0", "39.7", "46.0", "30.2", "-29.7", "-34.0", "-23.2",
        "tiny run", "abc"]
    assert "# The paper's claims, checked (profile: tiny)" in (tmp_path / "claims.md").read_text()
    assert len(json.loads((tmp_path / "claims.json").read_text())["claims"]) == 7
