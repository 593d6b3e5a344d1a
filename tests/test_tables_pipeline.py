"""The tables pipeline wiring: a Kedro run over row metrics on disk writes every table file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from spatialflow_repro.pipelines.tables import create_pipeline


def test_kedro_run_writes_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the nodes use Kedro's data/ layout relative to the project root
    metrics_dir = tmp_path / "data" / "08_reporting" / "metrics" / "val"
    metrics_dir.mkdir(parents=True)
    metrics = {"All": {"pq": 10.0, "sq": 60.0, "rq": 16.0}, "Things": {"pq": 12.0}, "Stuff": {"pq": 7.0}}
    metrics_dir.joinpath("t2_baseline.json").write_text(json.dumps({
        "row": "t2_baseline", "profile": "tiny", "ran": "tiny run", "has_ground_truth": True, "seeds": [0],
        "per_seed": [{"seed": 0, "mlflow_run_id": "abc", "metrics": metrics}]}))
    catalog = DataCatalog({"params:profile": MemoryDataset("tiny")})
    pipeline = create_pipeline()
    assert pipeline.inputs() == {"params:profile"}
    SequentialRunner().run(pipeline, catalog)
    out = tmp_path / "data" / "08_reporting" / "tables"
    assert len(list(out.glob("table*.md"))) == 7
    summary = json.loads((out / "summary.json").read_text())
    first = summary["tables"]["table2"]["rows"][0]
    # PQ 10.0 - published 39.7 = -29.7; PQ_th 12.0 - 46.0 = -34.0; PQ_st 7.0 - 30.2 = -23.2
    assert first["diff"] == {"pq": -29.7, "pq_th": -34.0, "pq_st": -23.2}
    first_line = next(line for line in (out / "table2.md").read_text().splitlines() if "t2_baseline" in line)
    assert [cell.strip() for cell in first_line.strip("|").split(" | ")] == [
        "baseline", "t2_baseline", "10.0", "12.0", "7.0", "39.7", "46.0", "30.2", "-29.7", "-34.0", "-23.2",
        "tiny run", "abc"]
