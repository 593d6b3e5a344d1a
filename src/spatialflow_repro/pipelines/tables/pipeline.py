"""Wires the table generation: row metrics on disk -> data/08_reporting/tables/ and the claims report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from spatialflow_repro.pipelines.tables.claims import generate_claims
from spatialflow_repro.pipelines.tables.nodes import generate_tables


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(generate_tables, inputs="params:profile", outputs="tables_summary", name="generate_tables"),
        Node(generate_claims, inputs="params:profile", outputs="claims_report", name="generate_claims"),
    ])
