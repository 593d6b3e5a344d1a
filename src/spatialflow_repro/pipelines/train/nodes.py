"""Nodes of one training row: train every seed, evaluate on val, log each seed as one MLflow run.

The heavy lifting is ``spatialflow.engine``; these functions only turn a params.yaml row into an
experiment config, keep DVC's semantics (a stage re-run resumes, a changed config starts over) and
collect the results in the small JSON files that the tables read.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import subprocess
from pathlib import Path

import yaml

from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine.config import experiment_to_dict, load_experiment_config
from spatialflow.errors import ConfigError
from spatialflow.utils.atomic import atomic_write_json, atomic_write_text
from spatialflow_repro import tracking
from spatialflow_repro.pipelines.train.launch_row import RESULT_FILE, torchrun_command, train_seed
from spatialflow_repro.rows import (
    active_profile,
    describe_row,
    experiment_config,
    row_lambda,
    row_runs_in_profile,
    trained_rows,
)

log = logging.getLogger(__name__)

SUMMARY_KEYS = {"pq": ("All", "pq"), "pq_th": ("Things", "pq"), "pq_st": ("Stuff", "pq"),
                "sq": ("All", "sq"), "rq": ("All", "rq")}


def _row(row_name: str, params: dict) -> tuple[dict, dict]:
    rows = trained_rows(params)
    if row_name not in rows:
        raise ConfigError(f"params.yaml has no trained row {row_name!r}")
    return rows[row_name], active_profile(params)


def _skipped(row_name: str, row: dict, profile: dict) -> dict:
    return {"row": row_name, "profile": profile["name"], "tables": row["tables"], "skipped":
            f"not run in profile {profile['name']} (tables {profile['tables']}, datasets {sorted(profile['datasets'])})"}


def _start_fresh_if_config_changed(cfg_dict: dict) -> None:
    """A DVC re-run resumes an interrupted row, but never continues checkpoints of another config."""
    output_dir = Path(cfg_dict["output_dir"])
    found = ckpt.latest_checkpoint(output_dir / "checkpoints")
    if found is None:
        return
    try:
        state = ckpt.load_checkpoint(found)
    except Exception:  # noqa: BLE001 - an unreadable file is the engine's fallback case
        return
    wanted = experiment_to_dict(load_experiment_config(cfg_dict))
    if state.get("config") != wanted:
        log.warning("%s: checkpoints of a different config; training this row from scratch", output_dir)
        shutil.rmtree(output_dir)


def _train_with_torchrun(cfg_dict: dict, row_name: str, row: dict, profile: dict, seed: int, gpus: int) -> dict:
    """One seed over ``gpus`` GPUs: torchrun runs spatialflow_repro.pipelines.train.launch_row, rank 0 reports back."""
    output_dir = Path(cfg_dict["output_dir"])
    config_path, info_path = output_dir / "row_config.yaml", output_dir / "row_info.json"
    atomic_write_text(config_path, yaml.safe_dump(cfg_dict, sort_keys=False))
    atomic_write_json(info_path, {"row_name": row_name, "row": row, "profile": profile, "seed": seed})
    command = torchrun_command(config_path, info_path, gpus)
    log.info("training %s seed %s on %d GPUs: %s", row_name, seed, gpus, " ".join(command))
    subprocess.run(command, check=True)
    return json.loads((output_dir / RESULT_FILE).read_text(encoding="utf-8"))


def train_row(row_name: str, params: dict, manifest: dict, stuff_lambda: dict | None = None,
              init_training: dict | None = None) -> dict:
    """Train every seed of one row (resuming interrupted seeds); returns what was trained where."""
    row, profile = _row(row_name, params)
    if not row_runs_in_profile(row, profile):
        return _skipped(row_name, row, profile)
    if stuff_lambda is not None:
        if stuff_lambda.get("lambda") is None:
            raise ConfigError(f"row {row_name!r}: {stuff_lambda.get('source')} (set a number as its lambda)")
        lam, lam_source = float(stuff_lambda["lambda"]), stuff_lambda["source"]
    else:
        lam, lam_source = row_lambda(row, profile, None)
    init_checkpoint = None
    if row.get("init_from"):
        if init_training is None or init_training.get("skipped"):
            raise ConfigError(f"row {row_name!r} starts from {row['init_from']!r}, which has no checkpoint in "
                              f"profile {profile['name']!r} (dvc pull it, or train it in its profile first)")
        init_checkpoint = init_training["seeds"][0]["final_model"]
    gpus = int(profile.get("gpus_per_row", 1))
    seeds = []
    for seed in params["seeds"]:
        cfg_dict = experiment_config(row_name, row, params, manifest, lam, seed, init_checkpoint)
        _start_fresh_if_config_changed(cfg_dict)
        if gpus > 1:
            seeds.append(_train_with_torchrun(cfg_dict, row_name, row, profile, seed, gpus))
        else:
            seeds.append(train_seed(cfg_dict, row_name, row, profile, seed))
    return {"row": row_name, "profile": profile["name"], "tables": row["tables"], "lambda": lam,
            "lambda_source": lam_source, "ran": describe_row(row, profile), "seeds": seeds}


def summarise(per_seed: list[dict]) -> tuple[dict | None, dict | None]:
    """Mean and sample standard deviation over seeds of PQ/PQ_th/PQ_st/SQ/RQ (std 0 for one seed)."""
    with_numbers = [s["metrics"] for s in per_seed if s.get("metrics")]
    if not with_numbers:
        return None, None
    values = {key: [m[group][name] for m in with_numbers] for key, (group, name) in SUMMARY_KEYS.items()}
    mean = {key: statistics.fmean(v) for key, v in values.items()}
    std = {key: (statistics.stdev(v) if len(v) > 1 else 0.0) for key, v in values.items()}
    return mean, std


def evaluate_checkpoint(final_model: str, split_role: str, out_dir: Path, tta: dict | None) -> dict:
    """Predict a split with a trained model; PQ where the split has ground truth, else the COCO upload.

    Returns {"metrics": pq_compute's dict | None, "submission": zip path | None}.
    """
    from spatialflow.engine.evaluation import evaluate, predict_split, read_split_json
    from spatialflow.engine.inference import TTAConfig
    from spatialflow.engine.trainer import load_trained_model
    from spatialflow.panoptic.submission import package_submission

    model, cfg, categories = load_trained_model(final_model)
    split = getattr(cfg.data, split_role)
    if split is None:
        raise ConfigError(f"{final_model}: its config has no '{split_role}' split to evaluate")
    sizes = cfg.data.transforms
    min_size = sizes.min_size if isinstance(sizes.min_size, int) else max(sizes.min_size)
    tta_config = None if tta is None else TTAConfig(scales=[tuple(s) for s in tta["scales"]], flip=bool(tta["flip"]))
    if split.png_dir is not None:
        metrics = evaluate(model, split.json, split.image_dir, out_dir, png_dir=split.png_dir,
                           min_size=min_size, max_size=sizes.max_size, tta=tta_config)
        return {"metrics": metrics, "submission": None}
    # No ground truth (COCO test-dev): predictions with the model's own categories -> the upload package.
    images = read_split_json(split.json)["images"]
    run = predict_split(model, images, split.image_dir, categories, out_dir, min_size=min_size,
                        max_size=sizes.max_size, tta=tta_config)
    _, zip_path = package_submission(run["pred_json"], run["pred_dir"], out_dir / "submission",
                                     method=f"spatialflow-{cfg.name}", image_info_json=split.json)
    return {"metrics": None, "submission": str(zip_path)}


def _evaluate(row_name: str, params: dict, training: dict, split_role: str, tta_name: str | None,
              out_name: str) -> dict:
    row, profile = _row(row_name, params)
    predictions_root = Path("data/07_model_output") / row_name / out_name
    predictions_root.mkdir(parents=True, exist_ok=True)  # a DVC output even when the row is skipped
    if training.get("skipped"):
        return {**_skipped(row_name, row, profile), "split": split_role}
    tta = profile["tta"][tta_name] if tta_name else None
    per_seed = []
    for seed_info in training["seeds"]:
        out_dir = predictions_root / f"seed{seed_info['seed']}"
        result = evaluate_checkpoint(seed_info["final_model"], split_role, out_dir, tta)
        entry = {"seed": seed_info["seed"], "mlflow_run_id": seed_info.get("mlflow_run_id"),
                 "predictions": str(out_dir), "metrics": result["metrics"], "submission": result["submission"]}
        tracking.log_evaluation(seed_info.get("mlflow_run_id"), split_role, entry, out_dir)
        per_seed.append(entry)
    mean, std = summarise(per_seed)
    return {
        "row": row_name, "profile": profile["name"], "tables": row["tables"], "split": split_role,
        "lambda": training["lambda"], "preset": row["preset"], "backbone": row["backbone"],
        "size": str(row["size"]), "dataset": row["dataset"], "ran": training["ran"], "tta": tta_name,
        "has_ground_truth": mean is not None, "seeds": [s["seed"] for s in per_seed], "per_seed": per_seed,
        "summary": mean, "summary_std": std,
        "submission": next((s["submission"] for s in per_seed if s.get("submission")), None),
    }


def evaluate_row_val(row_name: str, params: dict, training: dict) -> dict:
    """PQ of every seed of a row on the val split (with the row's val TTA, Table 7's "-M")."""
    row, _ = _row(row_name, params)
    return _evaluate(row_name, params, training, "val", row.get("val_tta"), "val_predictions")


def evaluate_row_testdev(row_name: str, params: dict, training: dict) -> dict:
    """Test-dev numbers (Tables 5-6), or the submission package where test-dev has no ground truth."""
    settings = (params.get("testdev_rows") or {}).get(row_name) or {}
    return _evaluate(row_name, params, training, "test", settings.get("tta"), "testdev_predictions")


def select_lambda(params: dict, *lambda_row_metrics: dict) -> tuple[dict, dict]:
    """Table 1's lambda search: the lambda with the best val PQ, and the lambda every later row uses.

    Returns (the search record, ``{row: {"lambda", "source"}}`` for every row of Tables 2-7). A row's file
    changes only when its own lambda changes, so a re-run of Table 1 retrains only rows that use the search.
    """
    profile = active_profile(params)
    candidates = [
        {"row": m["row"], "lambda": m["lambda"], "pq": m["summary"]["pq"], "pq_th": m["summary"]["pq_th"],
         "pq_st": m["summary"]["pq_st"]}
        for m in lambda_row_metrics if not m.get("skipped") and m.get("summary")
    ]
    # Best PQ; ties go to the larger PQ_st, then to the larger lambda (the order of Table 1).
    best = max(candidates, key=lambda c: (c["pq"], c["pq_st"], c["lambda"])) if candidates else None
    selected = None if best is None else best["lambda"]
    search = {"profile": profile["name"], "metric": "pq", "split": "val", "selected_lambda": selected,
              "selected_row": None if best is None else best["row"], "candidates": candidates}
    row_lambdas = {}
    for name, row in trained_rows(params).items():
        if row["group"] == "lambda_rows":
            continue
        try:
            lam, source = row_lambda(row, profile, selected)
        except ConfigError:
            lam, source = None, "no lambda: Table 1 did not run in this profile"
        row_lambdas[name] = {"lambda": lam, "source": source}
    return search, row_lambdas
