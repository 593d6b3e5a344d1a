"""Nodes that evaluate a trained row: val PQ (every seed, mean +- std) and test-dev (or the COCO upload).

They read the row's checkpoints (``<row>.training``) and the profile's inference settings
(``profiles.<p>.inference``: test-time detection, merge, TTA) and nothing of its training settings, so
the DVC stages that run them (`evaluate_val@<row>`, `evaluate_testdev@<row>`) re-run when the inference
settings or code change, and a retrained row re-runs them through its checkpoints.

Where the split has ground truth, every checkpoint is also evaluated with the authors' box-fill merge
(``using_bbox=True, bbox_overlap_thr=0.5``), reported in the metrics' ``box_fill`` block next to the
unchanged main keys: no training and no second forward pass, the same detections, masks
and stuff are merged twice.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from spatialflow.errors import ConfigError
from spatialflow.panoptic.pq import PAPER_COLUMNS, paper_columns
from spatialflow_repro import tracking
from spatialflow_repro.rows import inference_settings, row_and_profile, skipped_row, tta_settings



def summarise(per_seed: list[dict]) -> tuple[dict | None, dict | None]:
    """Mean and sample standard deviation over seeds of PQ/PQ_th/PQ_st/SQ/RQ (std 0 for one seed)."""
    with_numbers = [s["metrics"] for s in per_seed if s.get("metrics")]
    if not with_numbers:
        return None, None
    columns = [paper_columns(m) for m in with_numbers]
    values = {key: [c[key] for c in columns] for key in PAPER_COLUMNS}
    mean = {key: statistics.fmean(v) for key, v in values.items()}
    std = {key: (statistics.stdev(v) if len(v) > 1 else 0.0) for key, v in values.items()}
    return mean, std


BOX_FILL_RATIO = 0.5  # the authors' bbox_overlap_thr (configs/_base_/models/spatialflow_r50_fpn.py:123)


def box_fill_inference(inference: dict) -> dict | None:
    """The same inference settings with the authors' box-fill merge step on (``box_fill``, ratio 0.5);
    None where the main merge already fills boxes (the main metrics are then the box-fill ones)."""
    merge = dict(inference.get("merge") or {})
    if merge.get("box_fill"):
        return None
    return {**inference, "merge": {**merge, "box_fill": True, "box_fill_ratio": BOX_FILL_RATIO}}


def box_fill_block(settings: dict, per_seed: list[dict]) -> dict:
    """The ``box_fill`` block of a row's metrics: its merge settings, each seed's PQ and their summary."""
    mean, std = summarise(per_seed)
    return {"merge": settings["merge"], "per_seed": per_seed, "summary": mean, "summary_std": std}


def evaluate_checkpoint(final_model: str, split_role: str, out_dir: Path, tta: dict | None,
                        inference: dict | None = None, extra_merges: dict[str, dict] | None = None) -> dict:
    """Predict a split with a trained model under ``inference`` (InferenceConfig values; None: the
    paper's defaults); PQ where the split has ground truth, else the COCO upload. ``extra_merges``
    (``{name: merge settings}``): the same predictions also merged with these settings and scored, where
    the split has ground truth (no second forward pass).

    Returns {"metrics": pq_compute's dict | None, "submission": zip path | None,
    "extra_merges": {name: pq_compute's dict}}.
    """
    from spatialflow.inference.evaluate import evaluate, predict_split, read_split_json
    from spatialflow.inference.predict import TTAConfig
    from spatialflow.engine.trainer import load_trained_model
    from spatialflow.models.config import inference_config
    from spatialflow.panoptic.submission import package_submission

    model, cfg, categories = load_trained_model(final_model)
    model.inference = inference_config(inference)
    split = getattr(cfg.data, split_role)
    if split is None:
        raise ConfigError(f"{final_model}: its config has no '{split_role}' split to evaluate")
    sizes = cfg.data.transforms
    min_size = sizes.eval_min_size
    tta_config = None if tta is None else TTAConfig(scales=[tuple(s) for s in tta["scales"]], flip=bool(tta["flip"]))
    if split.png_dir is not None:
        merges = {name: inference_config({"merge": values}).merge for name, values in (extra_merges or {}).items()}
        metrics = evaluate(model, split.json, split.image_dir, out_dir, png_dir=split.png_dir,
                           min_size=min_size, max_size=sizes.max_size, tta=tta_config, extra_merges=merges)
        return {"metrics": metrics, "submission": None, "extra_merges": metrics.pop("extra_merges", {})}
    # No ground truth (COCO test-dev): predictions with the model's own categories -> the upload package.
    images = read_split_json(split.json)["images"]
    run = predict_split(model, images, split.image_dir, categories, out_dir, min_size=min_size,
                        max_size=sizes.max_size, tta=tta_config)
    _, zip_path = package_submission(run["pred_json"], run["pred_dir"], out_dir / "submission",
                                     method=submission_method(cfg.name), image_info_json=split.json)
    return {"metrics": None, "submission": str(zip_path), "extra_merges": {}}


def submission_method(row_name: str) -> str:
    """The method field of a row's upload name: ``spatialflow-<row>`` with '-' for '_' (the server's names
    separate their fields with '_')."""
    return "spatialflow-" + row_name.replace("_", "-")


def _evaluate(row_name: str, params: dict, training: dict, split_role: str, tta_name: str | None,
              predictions_folder: str) -> dict:
    row, profile = row_and_profile(row_name, params)
    if training is None:
        raise ConfigError(f"row {row_name!r} has no training record yet (its train stage has not run)")
    predictions_root = Path(predictions_folder)
    predictions_root.mkdir(parents=True, exist_ok=True)  # a DVC output even when the row is skipped
    if training.get("skipped"):
        return {**skipped_row(row_name, row, profile), "split": split_role}
    tta = tta_settings(tta_name, profile)
    inference = inference_settings(row, profile)
    box_fill = box_fill_inference(inference)
    per_seed, box_fill_seeds = [], []
    for seed_info in training["seeds"]:
        out_dir = predictions_root / f"seed{seed_info['seed']}"
        result = evaluate_checkpoint(seed_info["final_model"], split_role, out_dir, tta, inference,
                                     extra_merges={"box_fill": box_fill["merge"]} if box_fill else None)
        entry = {"seed": seed_info["seed"], "mlflow_run_id": seed_info.get("mlflow_run_id"),
                 "predictions": str(out_dir), "metrics": result["metrics"], "submission": result["submission"]}
        tracking.log_evaluation(seed_info.get("mlflow_run_id"), split_role, entry, out_dir,
                                run_reference=seed_info.get("mlflow_run"))
        per_seed.append(entry)
        if "box_fill" in result["extra_merges"]:
            box_fill_seeds.append({"seed": seed_info["seed"], "predictions": str(out_dir / "box_fill"),
                                   "metrics": result["extra_merges"]["box_fill"]})
    mean, std = summarise(per_seed)
    return {
        "row": row_name, "profile": profile["name"], "tables": row["tables"], "split": split_role,
        "stuff_loss_weight": training["stuff_loss_weight"], "preset": row["preset"], "backbone": row["backbone"],
        "size": str(row["size"]), "dataset": row["dataset"], "ran": training["ran"],
        "schedule": training.get("schedule"), "tta": tta_name,
        "inference": inference,
        "has_ground_truth": mean is not None, "seeds": [s["seed"] for s in per_seed], "per_seed": per_seed,
        "summary": mean, "summary_std": std,
        "submission": next((s["submission"] for s in per_seed if s.get("submission")), None),
        "box_fill": box_fill_block(box_fill, box_fill_seeds) if box_fill_seeds else None,
    }


def evaluate_row_val(row_name: str, params: dict, training: dict, predictions_folder: str) -> dict:
    """PQ of every seed of a row on the val split (with the row's val TTA, Table 7's "-M"); the predictions
    go to ``predictions_folder``/seed<k> (the catalog's ``<row>.val_predictions``)."""
    row, _ = row_and_profile(row_name, params)
    return _evaluate(row_name, params, training, "val", row.get("val_tta"), predictions_folder)


def evaluate_row_testdev(row_name: str, params: dict, training: dict, predictions_folder: str) -> dict:
    """Test-dev numbers (Tables 5-6), or the submission package where test-dev has no ground truth."""
    settings = (params.get("testdev_rows") or {}).get(row_name) or {}
    return _evaluate(row_name, params, training, "test", settings.get("tta"), predictions_folder)


