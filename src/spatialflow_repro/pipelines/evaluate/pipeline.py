"""Wiring of the evaluation of trained rows, namespaced like their training (DVC stages
`evaluate_val@<row>`, `evaluate_lambda@<row>`, `evaluate_pretrained@<row>`, `evaluate_testdev@<row>`)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.evaluate.nodes import evaluate_row_testdev, evaluate_row_val
from spatialflow_repro.pipelines.train.pipeline import for_row


def row_evaluation_pipeline(row_name: str, row: dict) -> Pipeline:
    """Evaluate a trained row on val, namespaced ``row_name``: ``<row>.training`` -> ``<row>.metrics``
    (``<row>.lambda_metrics`` for Table 1, which its search reads). DVC stage ``evaluate_*@<row>``."""
    output = "lambda_metrics" if row["group"] == "search_rows" else "metrics"
    return Pipeline([node(for_row(evaluate_row_val, row_name), inputs=["parameters", "training", "val_predictions"],
                          outputs=output, name="evaluate_val")],
                    namespace=row_name, parameters={"parameters"})


def create_evaluation_pipeline(rows: dict[str, dict]) -> Pipeline:
    """Val evaluation of every trained row."""
    return sum((row_evaluation_pipeline(name, row) for name, row in rows.items()), Pipeline([]))


def create_testdev_pipeline(testdev_rows: list[str]) -> Pipeline:
    """Trained rows evaluated on test-dev (Tables 5-6), namespaced like their training row."""
    return sum(
        (Pipeline([node(for_row(evaluate_row_testdev, name), inputs=["parameters", "training", "testdev_predictions"],
                        outputs="testdev_metrics", name="evaluate_testdev")],
                  namespace=name, parameters={"parameters"})
         for name in testdev_rows),
        Pipeline([]),
    )
