"""All pipelines of the project, built from the experiment grid in params.yaml."""

from __future__ import annotations

import warnings
from pathlib import Path

from kedro.pipeline import Pipeline

from spatialflow_repro.config_loader import PARAMS_FILE
from spatialflow_repro.params_check import check_params_file
from spatialflow_repro.pipelines.data_prep import pipeline as data_prep
from spatialflow_repro.pipelines.evaluate import pipeline as evaluate
from spatialflow_repro.pipelines.figures import pipeline as figures
from spatialflow_repro.pipelines.tables import pipeline as tables
from spatialflow_repro.pipelines.train import pipeline as train
from spatialflow_repro.pipelines.train.nodes import search_dataset
from spatialflow_repro.rows import DATASETS, testdev_rows, trained_rows


def find_params_file() -> Path:
    """params.yaml of the project being run (Kedro and DVC run from the project root)."""
    for candidate in (Path.cwd() / PARAMS_FILE, Path(__file__).resolve().parents[3] / PARAMS_FILE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{PARAMS_FILE}: not found in {Path.cwd()} (run from the project root)")


# Table 1's search reads the search rows' metrics, a row the weight of its dataset and Table 7's -COCO row
# the checkpoints of the row it starts from: datasets of other namespaces (``<row>.lambda_metrics``,
# ``<dataset>.stuff_loss_weight``, ``<row>.training``), whose
# names have a dot by Kedro's own namespacing. Kedro warns about any such name when a node is built.
DOTTED_NAMES_WARNING = "One or more dataset names contain '.' characters"


def build_pipelines(params: dict | None = None) -> dict[str, Pipeline]:
    """Every pipeline of the grid in ``params`` (default: params.yaml, read strictly and checked first, so a
    bad grid is one line per problem before anything runs)."""
    if params is None:
        params = check_params_file(find_params_file())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DOTTED_NAMES_WARNING, category=UserWarning)
        return _build_pipelines(params)


def _build_pipelines(params: dict) -> dict[str, Pipeline]:
    rows = trained_rows(params)
    search_rows = [name for name, row in rows.items() if row["group"] == "search_rows"]
    pipelines = {
        "data_prep": data_prep.create_pipeline(),
        "pretrain_backbone": data_prep.create_pretrain_pipeline(list(params.get("pretrain_backbones") or {})),
        "train": train.create_pipeline(rows),
        "evaluate_val": evaluate.create_evaluation_pipeline(rows),
        "stuff_loss_weight": train.create_stuff_loss_weight_pipeline(search_rows, search_dataset(params), DATASETS),
        "evaluate": evaluate.create_testdev_pipeline(list(testdev_rows(params))),
    }
    # `kedro run` alone trains and evaluates every row; tables and figures read the row metrics from
    # disk, so they run after it by name (`kedro run --pipelines tables`), as their DVC stages do.
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["tables"] = tables.create_pipeline()
    compared = params.get("figures") or {}
    pipelines["figures"] = figures.create_pipeline(compared.get("baseline_row", "t2_baseline"),
                                                   compared.get("spatialflow_row", "t2_spatialflow"))
    return pipelines
