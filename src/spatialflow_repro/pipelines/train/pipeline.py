"""Wiring of the training rows. One Kedro namespace per row (= one DVC stage `<group>@<row>`)."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.train.nodes import (
    evaluate_row_testdev,
    evaluate_row_val,
    select_lambda,
    train_row,
)

SHARED_INPUTS = {"datasets_manifest"}


def for_row(func, row_name: str):
    """``func`` with its first argument (the row name) bound, keeping its name for Kedro's logs."""
    return update_wrapper(partial(func, row_name), func)


def row_pipeline(row_name: str, row: dict) -> Pipeline:
    """train -> evaluate on val, namespaced ``row_name``: datasets ``<row>.training`` and ``<row>.metrics``
    (``<row>.lambda_metrics`` for Table 1, which the lambda search reads)."""
    train_inputs = ["parameters", "datasets_manifest"]
    outside = set(SHARED_INPUTS)
    if row["group"] != "lambda_rows":
        train_inputs.append("stuff_lambda")  # data/05_model_input/row_lambda/<row>.json
    if row.get("init_from"):
        train_inputs.append(f"{row['init_from']}.training")
        outside.add(f"{row['init_from']}.training")
    nodes = [
        node(for_row(train_row, row_name), inputs=train_inputs, outputs="training", name="train"),
        node(for_row(evaluate_row_val, row_name), inputs=["parameters", "training"],
             outputs="lambda_metrics" if row["group"] == "lambda_rows" else "metrics", name="evaluate_val"),
    ]
    return Pipeline(nodes, namespace=row_name, inputs=outside, parameters={"parameters"})


def create_pipeline(rows: dict[str, dict]) -> Pipeline:
    """Every trained row of every table."""
    return sum((row_pipeline(name, row) for name, row in rows.items()), Pipeline([]))


def create_lambda_search_pipeline(lambda_rows: list[str]) -> Pipeline:
    """Table 1's lambda search: the metrics of its rows -> the lambda every later row trains with."""
    return Pipeline([
        node(select_lambda, inputs=["parameters", *[f"{name}.lambda_metrics" for name in lambda_rows]],
             outputs=["lambda_search", "row_lambdas"], name="select_lambda"),
    ])


def create_testdev_pipeline(testdev_rows: list[str]) -> Pipeline:
    """Trained rows evaluated on test-dev (Tables 5-6), namespaced like their training row."""
    return sum(
        (Pipeline([node(for_row(evaluate_row_testdev, name), inputs=["parameters", "training"],
                        outputs="testdev_metrics", name="evaluate_testdev")],
                  namespace=name, parameters={"parameters"})
         for name in testdev_rows),
        Pipeline([]),
    )
