"""Wires the table generation: row metrics -> Tables 1-7 and the claims report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from spatialflow_repro.pipelines.tables.claims import generate_claims
from spatialflow_repro.pipelines.tables.nodes import generate_tables

ROW_METRICS = ["lambda_row_metrics", "val_row_metrics", "testdev_row_metrics"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(generate_tables, inputs=["params:profile", "paper_tables", *ROW_METRICS, "lambda_search"],
             outputs="reproduced_tables", name="generate_tables"),
        Node(generate_claims, inputs=["params:profile", "paper_tables", *ROW_METRICS],
             outputs=["claims_markdown", "claims_report"], name="generate_claims"),
    ])
