"""Wiring of the training rows: one Kedro namespace per row (DVC stage `train@<row>`), and the stuff-loss
weight of each dataset (Table 1's search, or the profile's number)."""

from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from spatialflow_repro.pipelines.train.nodes import fixed_stuff_loss_weight, search_stuff_loss_weight, train_row

SHARED_INPUTS = {"datasets_manifest"}


def for_row(func, row_name: str):
    """``func`` with its first argument (the row name) bound, keeping its name for Kedro's logs."""
    return update_wrapper(partial(func, row_name), func)


def row_training_pipeline(row_name: str, row: dict) -> Pipeline:
    """Train every seed of a row, namespaced ``row_name``: writes ``<row>.training`` (DVC stage
    ``train@<row>``, or ``table1@<row>`` / ``train_pretrained@<row>``). A row outside Table 1 reads the
    stuff-loss weight of its dataset (``<dataset>.stuff_loss_weight``)."""
    train_inputs = ["parameters", "datasets_manifest", "run_folder", "model_folder"]
    outside = set(SHARED_INPUTS)
    if row["group"] != "search_rows":
        weight = f"{row['dataset']}.stuff_loss_weight"
        train_inputs.append(weight)
        outside.add(weight)
    if row.get("init_from"):
        train_inputs.append(f"{row['init_from']}.training")
        outside.add(f"{row['init_from']}.training")
    return Pipeline([node(for_row(train_row, row_name), inputs=train_inputs, outputs="training", name="train")],
                    namespace=row_name, inputs=outside, parameters={"parameters"})


def create_pipeline(rows: dict[str, dict]) -> Pipeline:
    """Training of every trained row of every table."""
    return sum((row_training_pipeline(name, row) for name, row in rows.items()), Pipeline([]))


def create_stuff_loss_weight_pipeline(search_rows: list[str], search_dataset: str,
                                      datasets: tuple[str, ...]) -> Pipeline:
    """One Kedro namespace per dataset (``kedro run --pipelines stuff_loss_weight --namespaces <dataset>``):
    Table 1's search for ``search_dataset`` (reads the search rows' metrics), the profile's number for the
    others (reads nothing but the parameters). Writes ``<dataset>.stuff_loss_weight``."""
    metrics = [f"{name}.lambda_metrics" for name in search_rows]
    search = Pipeline([node(search_stuff_loss_weight, inputs=["parameters", *metrics],
                            outputs=["lambda_search", "stuff_loss_weight"], name="search")],
                      namespace=search_dataset, inputs=set(metrics), outputs={"lambda_search"},
                      parameters={"parameters"})
    fixed = [Pipeline([node(for_row(fixed_stuff_loss_weight, dataset), inputs="parameters",
                            outputs="stuff_loss_weight", name="fixed")],
                      namespace=dataset, parameters={"parameters"})
             for dataset in datasets if dataset != search_dataset]
    return sum(fixed, search)
