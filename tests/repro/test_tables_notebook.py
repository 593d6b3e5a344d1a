"""notebooks/results.ipynb executes against a temporary tables dir and a temporary MLflow database."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import nbformat
import pytest
from nbclient import NotebookClient

from helpers.paths import REPO_ROOT
from spatialflow.utils.yaml_io import read_yaml
from spatialflow_repro.pipelines.tables import nodes
from test_tables_nodes import PAPER_TABLES, metrics_in, write_tables

NOTEBOOK = REPO_ROOT / "notebooks" / "results.ipynb"


@pytest.mark.slow  # starts a Jupyter kernel and creates an MLflow SQLite store (~20-30 s on 2 cores)
def test_results_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("spatialflow-tiny")
    run = client.create_run(experiment, tags={"row": "t2_baseline", "seed": "0"})
    client.log_metric(run.info.run_id, "pq_all", 41.0)
    client.set_terminated(run.info.run_id)

    val = tmp_path / "metrics" / "val"
    val.mkdir(parents=True)
    metrics = {"All": {"pq": 41.0, "sq": 70.0, "rq": 55.0}, "Things": {"pq": 45.0}, "Stuff": {"pq": 30.0}}
    val.joinpath("t2_baseline.json").write_text(json.dumps({
        "profile": "tiny", "ran": "tiny", "seeds": [0],
        "per_seed": [{"seed": 0, "mlflow_run_id": run.info.run_id, "metrics": metrics}]}))
    tables = tmp_path / "tables"
    paper = read_yaml(PAPER_TABLES)
    summary = nodes.build_summary("tiny", paper, metrics_in(tmp_path / "metrics"), None)
    write_tables(summary, tables, paper)

    monkeypatch.setenv("SPATIALFLOW_TABLES_DIR", str(tables))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    text = "\n".join(
        out.get("text", "") + json.dumps(out.get("data", {}))
        for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "profile: tiny" in text
    assert "Table 2: Contribution of each component" in text
    assert run.info.run_id in text
    # the links cell: the table row's run is found in MLflow
    assert "<td>t2_baseline</td>" in text and "<td>True</td>" in text
    assert "image/png" in text  # the reproduced-vs-published PQ plot
