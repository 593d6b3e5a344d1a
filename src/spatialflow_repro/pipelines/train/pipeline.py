"""Wiring of the training rows: one Kedro namespace per row (DVC stage `train@<row>`), and the lambda search."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.train.nodes import select_lambda, train_row

SHARED_INPUTS = {"datasets_manifest"}


def for_row(func, row_name: str):
    """``func`` with its first argument (the row name) bound, keeping its name for Kedro's logs."""
    return update_wrapper(partial(func, row_name), func)


def row_training_pipeline(row_name: str, row: dict) -> Pipeline:
    """Train every seed of a row, namespaced ``row_name``: writes ``<row>.training`` (DVC stage
    ``train@<row>``, or ``table1@<row>`` / ``train_pretrained@<row>``)."""
    train_inputs = ["parameters", "datasets_manifest"]
    outside = set(SHARED_INPUTS)
    if row["group"] != "lambda_rows":
        train_inputs.append("stuff_lambda")  # data/05_model_input/row_lambda/<row>.json
    if row.get("init_from"):
        train_inputs.append(f"{row['init_from']}.training")
        outside.add(f"{row['init_from']}.training")
    return Pipeline([node(for_row(train_row, row_name), inputs=train_inputs, outputs="training", name="train")],
                    namespace=row_name, inputs=outside, parameters={"parameters"})


def create_pipeline(rows: dict[str, dict]) -> Pipeline:
    """Training of every trained row of every table."""
    return sum((row_training_pipeline(name, row) for name, row in rows.items()), Pipeline([]))


def create_lambda_search_pipeline(lambda_rows: list[str]) -> Pipeline:
    """Table 1's lambda search: the metrics of its rows -> the lambda every later row trains with."""
    return Pipeline([
        node(select_lambda, inputs=["parameters", *[f"{name}.lambda_metrics" for name in lambda_rows]],
             outputs=["lambda_search", "row_lambdas"], name="select_lambda"),
    ])
