"""Train one row of the grid in this process, or in every process that torchrun starts.

The Kedro training node calls :func:`train_seed` directly on one device, or launches this module with
``torchrun --nproc_per_node N -m spatialflow_repro.pipelines.train.launch_row --config C --row-info R`` when the profile
asks for ``gpus_per_row > 1``. Rank 0 tracks the run in MLflow and writes ``train_result.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine.config import load_experiment_config
from spatialflow.utils.atomic import atomic_write_json
from spatialflow_repro import tracking

RESULT_FILE = "train_result.json"


def train_seed(cfg_dict: dict, row_name: str, row: dict, profile: dict, seed: int, progress: str = "auto") -> dict:
    """Train (or resume) one seed of a row; returns the summary rank 0 also writes to train_result.json.
    ``progress``: ``auto`` (a bar on a terminal, lines in a log), or ``lines`` where seeds share a terminal."""
    from spatialflow.engine.trainer import train

    cfg = load_experiment_config(cfg_dict)
    output_dir = Path(cfg.output_dir)
    done = _finished(output_dir, cfg)
    if done is not None:  # this identity was trained to the end already: nothing to redo, no new MLflow run
        return done
    resume = ckpt.latest_checkpoint(output_dir / "checkpoints") is not None
    callbacks, tracker = [], None
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun's rank (the process group starts inside train)
        tracker = tracking.row_callback(row_name, row, profile, seed, cfg_dict)
        callbacks.append(tracker)
    try:
        result = train(cfg, callbacks=callbacks, resume=resume, replace=True, progress=progress)
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    summary = {
        "seed": int(seed),
        "final_model": str(result.final_model),
        "iterations": int(result.iterations),
        "resumed_from": int(result.start_iteration),
        "seconds": round(float(result.seconds), 3),
        "iterations_per_second": round(float(result.iterations_per_second), 3),
        "last_losses": {k: round(float(v), 6) for k, v in result.last_losses.items()},
        "mlflow_run_id": None if tracker is None else tracker.run_id,
        "mlflow_run": None if tracker is None else tracker.run_reference(),  # finds the run after an outage
    }
    if tracker is not None:
        tracker.close("FINISHED")
        atomic_write_json(Path(cfg.output_dir) / RESULT_FILE, summary)
    return summary


def _finished(output_dir: Path, cfg) -> dict | None:
    """The stored summary of a seed whose folder holds this very training identity, trained to the end."""
    from spatialflow.engine.run_dir import run_identity, stored_identity

    result, final = output_dir / RESULT_FILE, output_dir / "model_final.pt"
    if not (result.is_file() and final.is_file()) or stored_identity(output_dir) != run_identity(cfg):
        return None
    try:
        return json.loads(result.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def torchrun_command(config_path: Path, info_path: Path, gpus: int) -> list[str]:
    """The command the training node runs for a row spread over ``gpus`` GPUs of this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "spatialflow_repro.pipelines.train.launch_row", "--config", str(config_path), "--row-info", str(info_path)]


def main(argv: list[str] | None = None) -> int:
    from spatialflow.engine.distributed import cleanup

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the row's resolved experiment config (YAML)")
    parser.add_argument("--row-info", required=True, help="JSON with row_name, row, profile and seed")
    args = parser.parse_args(argv)
    cfg_dict = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    info = json.loads(Path(args.row_info).read_text(encoding="utf-8"))
    try:
        train_seed(cfg_dict, info["row_name"], info["row"], info["profile"], int(info["seed"]))
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
