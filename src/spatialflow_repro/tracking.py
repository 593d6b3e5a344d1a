"""MLflow runs of the experiment grid: one run per row and seed, named, tagged and nested under a parent run
per table (``table2``), so a table's rows sit together in the UI; the evaluations and figures add to the
row's run. The buffered, outage-proof client is ``spatialflow_repro.mlflow_client``.

What the MLflow UI shows (docs/tracking.md): the experiment is tagged as a model-training experiment
(``mlflow.experimentKind``) with a description naming the profile and commit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spatialflow.panoptic.pq import PAPER_COLUMNS
from spatialflow_repro.mlflow_client import MlflowCallback, git_commit, pq_metrics, resolved_params

# MLflow 3's experiment kind (model training, not GenAI). MLflow 3.17's UI lets its global "GenAI / Model
# training" switch win over this tag (docs/tracking.md); other MLflow 3 UIs open such an experiment on its runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"  # the experiment's (or a run's) description in the UI

# The Kedro training node opens one run per row and seed (row_callback); the evaluation nodes add the
# PQ of val / test-dev and a few prediction PNGs to that same run (log_evaluation).

STAGE_GROUPS = {"search_rows": "table1", "rows": "train", "pretrained_rows": "train_pretrained"}
PREDICTION_PNGS_LOGGED = 3


def experiment_name(profile_name: str) -> str:
    return f"spatialflow-{profile_name}"


def experiment_tags(profile: dict, commit: str) -> dict[str, str]:
    """The experiment's kind (model training, see EXPERIMENT_KIND) and its description."""
    description = (f"SpatialFlow-Repro training rows of the **{profile['name']}** profile "
                   f"(params.yaml `profiles.{profile['name']}`), last logged at git commit `{commit}`.")
    if profile.get("description"):
        description += f"\n\nProfile: {profile['description']}"
    description += ("\n\nOne run per row and seed, nested under a parent run per table (`table2`, ...). "
                    "Compare a table's rows: expand its parent, select the rows, Compare.")
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, DESCRIPTION_TAG: description}


def table_parent(row: dict, profile: dict) -> dict[str, Any]:
    """The parent run of a row's first table (``table2`` for a row of Tables 2 and 4)."""
    table = f"table{row['tables'][0]}"
    return {"name": table, "tags": {"table": table, "profile": profile["name"],
                                    DESCRIPTION_TAG: f"Table {row['tables'][0]} rows of profile "
                                                     f"{profile['name']}: expand to see and compare them"}}


METRIC_NAMES = {"pq": "PQ", "pq_th": "PQ_th", "pq_st": "PQ_st", "sq": "SQ", "rq": "RQ"}  # the paper's spelling
SPLIT_LABELS = {"val": "val", "test": "test-dev"}


def paper_metrics(metrics: dict, split: str) -> dict[str, float]:
    """pq_compute's dict -> the paper's columns for one split: {"val/PQ", "val/PQ_th", "val/PQ_st",
    "val/SQ", "val/RQ"} (``test-dev/...`` for the test split)."""
    label = SPLIT_LABELS.get(split, split)
    return {f"{label}/{METRIC_NAMES[column]}": float(metrics[group][key])
            for column, (group, key) in PAPER_COLUMNS.items()
            if isinstance(metrics.get(group), dict) and key in metrics[group]}


def row_callback(row_name: str, row: dict, profile: dict, seed: int, config: dict) -> MlflowCallback:
    """The MLflow run of one row and seed: tags table / row / preset / profile / seed / git commit / DVC
    stage, the resolved config as params, nested under its table's parent run."""
    tags = {
        "table": ",".join(str(t) for t in row["tables"]),
        "row": row_name,
        "profile": profile["name"],
        "seed": seed,
        "preset": row["preset"],
        "dvc_stage": f"{STAGE_GROUPS.get(row.get('group', 'rows'), 'train')}@{row_name}",
    }
    commit = git_commit()
    tags[DESCRIPTION_TAG] = (f"Row `{row_name}` (seed {seed}) of profile {profile['name']}: preset "
                             f"{row['preset']}, backbone {row.get('backbone')}, size {row.get('size')}, "
                             f"dataset {row.get('dataset')}, commit `{commit}`")
    return MlflowCallback(experiment_name(profile["name"]), f"{row_name}/seed{seed}", tags=tags,
                          params=resolved_params(config), experiment_tags=experiment_tags(profile, commit),
                          parent=table_parent(row, profile))


def log_evaluation(run_id: str | None, split: str, entry: dict, predictions: str | os.PathLike,
                   run_reference: dict | None = None) -> None:
    """Add a split's PQ/SQ/RQ (suffix ``_test`` for test-dev), its metrics JSON and a few predicted PNGs
    to the row's run (found by ``run_id``, else by ``run_reference``'s run key, see
    :meth:`MlflowCallback.attach`). Never raises: an outage leaves a ``mlflow_pending.json`` in
    ``predictions``, replayed like a training run's."""
    if run_id is None and not (run_reference or {}).get("run_key"):
        return
    callback = MlflowCallback.attach(run_id, run_reference=run_reference)
    suffix = "" if split == "val" else f"_{split}"
    callback.output_dir = Path(predictions)
    metrics = entry.get("metrics") or {}
    callback.log_metrics({f"{k}{suffix}": v for k, v in pq_metrics(
        {key: metrics[key] for key in ("All", "Things", "Stuff") if key in metrics}).items()})
    callback.log_metrics(paper_metrics(metrics, split))
    for key in ("inference_seconds", "images_per_second"):
        if key in metrics:
            callback.log_metrics({f"{key}{suffix}": metrics[key]})
    pngs = sorted((Path(predictions) / "panoptic_pred").glob("*.png"))[:PREDICTION_PNGS_LOGGED]
    summary = Path(predictions) / "metrics.json"
    callback.log_artifacts([p for p in [summary, *pngs] if p.is_file()], artifact_path=f"predictions_{split}")
    if entry.get("submission"):
        callback.set_tags({"submission": entry["submission"]})
    callback.close(status=None)


def log_figure(run_ids: list[str | None], path: str | os.PathLike, artifact_path: str = "figures") -> None:
    """Add a figure (e.g. the panoptic overlays of the rows it compares) to each of these runs. Never
    raises: an outage leaves a ``mlflow_pending.json`` next to the figure."""
    for run_id in dict.fromkeys(r for r in run_ids if r):
        callback = MlflowCallback.attach(run_id)
        callback.output_dir = Path(path).parent
        callback.log_artifacts([path], artifact_path=artifact_path)
        callback.close(status=None)
