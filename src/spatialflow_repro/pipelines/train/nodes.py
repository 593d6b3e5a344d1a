"""Nodes of one training row: train every seed (one MLflow run each); the stuff-loss weight of a dataset
(Table 1's search, or the profile's number).

Training and evaluation are separate nodes and separate DVC stages (`train@<row>`, `evaluate_val@<row>`,
see ``pipelines/evaluate``): training reads only the row's training identity and run settings, so changing
a merge threshold re-evaluates and never retrains. The heavy lifting is ``spatialflow.engine``; these
functions turn a params.yaml row into experiment configs and collect results in small JSON files.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import yaml

from spatialflow.engine.config import load_experiment_config
from spatialflow.errors import ConfigError
from spatialflow.utils.atomic import atomic_open, atomic_write_json, atomic_write_text
from spatialflow_repro import tracking
from spatialflow_repro.pipelines.train.launch_row import RESULT_FILE, torchrun_command, train_seed
from spatialflow_repro.rows import (
    active_profile,
    describe_row,
    row_overrides,
    experiment_config,
    row_and_profile,
    WEIGHT,
    profile_stuff_loss_weight,
    row_stuff_loss_weight,
    row_runs_in_profile,
    row_schedule,
    row_seeds,
    skipped_row,
    trained_rows,
)

log = logging.getLogger(__name__)

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


def _train_one_seed_process(cfg_dict: dict, row_name: str, row: dict, profile: dict) -> dict:
    """One seed in a worker process; the trainer sets its threads (``train.cpu_threads``, identity)."""
    # seeds side by side write lines, not bars that would overwrite each other
    return train_seed(cfg_dict, row_name, row, profile, cfg_dict["train"]["seed"], progress="lines")


def _train_seeds_in_parallel(configs: list[dict], row_name: str, row: dict, profile: dict, parallel: int) -> list[dict]:
    """A row's seeds as ``parallel`` processes at once (run setting ``parallel_seeds``). Small CPU models use
    two cores far better as two single-threaded processes than as one two-threaded one. Each seed trains
    with its identity's ``train.cpu_threads`` whether its seeds run side by side or one after another, so
    its weights are the same either way."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(parallel, len(configs))
    threads = configs[0]["train"].get("cpu_threads")
    log.info("training %d seeds of %s, %d at a time, %s thread(s) each", len(configs), row_name, workers,
             threads or "torch's default number of")
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_one_seed_process, c, row_name, row, profile) for c in configs]
        return [f.result() for f in futures]


PUBLISHED_FILES = ("model_final.pt", "identity.json", "config.yaml", RESULT_FILE)


def publish_seed(work_dir: str | Path, model_dir: str | Path, summary: dict) -> dict:
    """Copy a finished seed's weights and records from the working area into the stage's output folder
    (each file atomically); returns the summary with ``final_model`` pointing at the published weights.

    The working area (``<row>.run_folder``: checkpoints, lock, moved-aside runs) is no DVC output, so an
    interrupted row resumes from it and nothing half-done is cached or pushed; the output folder holds only
    finished rows, which DVC's run-cache can restore on another machine."""
    work_dir, model_dir = Path(work_dir), Path(model_dir)
    for name in PUBLISHED_FILES:
        if (work_dir / name).is_file():
            with open(work_dir / name, "rb") as source, atomic_open(model_dir / name, "wb") as target:
                shutil.copyfileobj(source, target)
    return {**summary, "final_model": str(model_dir / "model_final.pt")}


def train_row(row_name: str, params: dict, manifest: dict, run_folder: str, model_folder: str,
              dataset_weight: dict | None = None, init_training: dict | None = None) -> dict:
    """Train every seed of one row in the working area ``run_folder``/seed<k> (the catalog's
    ``<row>.run_folder``), then publish each finished seed to ``model_folder``/seed<k> (``<row>.model_folder``,
    the DVC output); returns what was trained where.

    ``dataset_weight``: the stuff-loss weight of the row's dataset (``{"stuff_loss_weight", "source"}``, from
    :func:`dataset_stuff_loss_weight`), for a row that sets none itself; Table 1's rows set their own.
    Every seed's config is validated before anything is written. A seed whose folder holds the same
    training identity resumes (or is already done); one holding another identity is moved aside to
    ``seed<k>.replaced-<time>`` by the engine, never deleted.
    """
    row, profile = row_and_profile(row_name, params)
    if not row_runs_in_profile(row, profile):
        return skipped_row(row_name, row, profile)
    if WEIGHT in row or dataset_weight is None:
        weight, weight_source = row_stuff_loss_weight(row, profile, None)
    elif dataset_weight.get(WEIGHT) is None:
        raise ConfigError(f"row {row_name!r}: {dataset_weight.get('source')}")
    else:
        weight, weight_source = float(dataset_weight[WEIGHT]), dataset_weight["source"]
    init_checkpoint = None
    if row.get("init_from"):
        if init_training is None or init_training.get("skipped"):
            raise ConfigError(f"row {row_name!r} starts from {row['init_from']!r}, which has no checkpoint in "
                              f"profile {profile['name']!r} (dvc pull it, or train it in its profile first)")
        init_checkpoint = init_training["seeds"][0]["final_model"]
    configs = [experiment_config(row_name, row, params, manifest, weight, seed, init_checkpoint, run_folder=run_folder)
               for seed in row_seeds(row_name, params)]
    for cfg_dict in configs:  # validate every seed before touching the disk
        load_experiment_config(cfg_dict)
    run = profile.get("run") or {}
    gpus, parallel = int(run.get("gpus_per_row", 1)), int(run.get("parallel_seeds", 1))
    if gpus > 1:
        seeds = [_train_with_torchrun(c, row_name, row, profile, c["train"]["seed"], gpus) for c in configs]
    elif parallel > 1 and len(configs) > 1:
        seeds = _train_seeds_in_parallel(configs, row_name, row, profile, parallel)
    else:
        seeds = [train_seed(c, row_name, row, profile, c["train"]["seed"]) for c in configs]
    seeds = [publish_seed(c["output_dir"], Path(model_folder) / f"seed{s['seed']}", s) for c, s in zip(configs, seeds)]
    overrides = row_overrides(row_name, params, profile)
    schedule = row_schedule(row, profile, overrides)
    return {"row": row_name, "profile": profile["name"], "tables": row["tables"], WEIGHT: weight,
            f"{WEIGHT}_source": weight_source, "ran": describe_row(row, profile, overrides),
            "schedule": {"length": schedule["length"], "unit": schedule["unit"]}, "seeds": seeds}


def search_stuff_loss_weight(params: dict, *search_row_metrics: dict) -> tuple[dict, dict]:
    """Table 1's search: the weight with the best val PQ over the search rows, and the weight of the dataset
    they trained on (the profile's number where it pins one, else the search's pick).

    Returns (the search record, ``{"stuff_loss_weight", "source"}``). The dataset's file changes only when
    its weight changes, so a re-run of Table 1 retrains only the rows that use the search.
    """
    profile = active_profile(params)
    candidates = [
        {"row": m["row"], WEIGHT: m[WEIGHT], "pq": m["summary"]["pq"], "pq_th": m["summary"]["pq_th"],
         "pq_st": m["summary"]["pq_st"]}
        for m in search_row_metrics if not m.get("skipped") and m.get("summary")
    ]
    # Best PQ; ties go to the larger PQ_st, then to the larger weight (the order of Table 1).
    best = max(candidates, key=lambda c: (c["pq"], c["pq_st"], c[WEIGHT])) if candidates else None
    selected = None if best is None else best[WEIGHT]
    search = {"profile": profile["name"], "metric": "pq", "split": "val", f"selected_{WEIGHT}": selected,
              "selected_row": None if best is None else best["row"], "candidates": candidates}
    return search, dataset_stuff_loss_weight(params, search_dataset(params), selected)


def search_dataset(params: dict) -> str:
    """The dataset Table 1's search rows train on (one for all of them)."""
    datasets = {row["dataset"] for row in trained_rows(params).values() if row["group"] == "search_rows"}
    if len(datasets) != 1:
        raise ConfigError(f"params.yaml: search_rows must all train on one dataset, got {sorted(datasets)}")
    return datasets.pop()


def dataset_stuff_loss_weight(params: dict, dataset: str, selected: float | None = None) -> dict:
    """``{"stuff_loss_weight", "source"}`` of a dataset in the active profile: the profile's number, or
    Table 1's pick ``selected`` where the profile says ``search`` (None, with the reason, when there is none)."""
    profile = active_profile(params)
    if dataset not in (profile.get(WEIGHT) or {}):  # the profile trains no row on this dataset
        return {WEIGHT: None, "source": f"profiles.{profile['name']}.{WEIGHT} has no entry for {dataset!r}"}
    value = profile_stuff_loss_weight(profile, dataset)
    if value != "search":
        return {WEIGHT: float(value), "source": f"profiles.{profile['name']}.{WEIGHT}.{dataset}"}
    if dataset != search_dataset(params):
        raise ConfigError(f"profiles.{profile['name']}.{WEIGHT}.{dataset}: 'search' is Table 1's search, which "
                          f"trains on {search_dataset(params)!r}; give {dataset!r} a number")
    if selected is None:
        return {WEIGHT: None, "source": "Table 1's search selected no weight (it did not run in this profile)"}
    return {WEIGHT: float(selected), "source": "Table 1's search"}


def fixed_stuff_loss_weight(dataset: str, params: dict) -> dict:
    """Kedro node: the weight of a dataset Table 1 does not search (the profile's number)."""
    return dataset_stuff_loss_weight(params, dataset)
