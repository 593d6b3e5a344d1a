"""``spatialflow train``: one training row outside Kedro (the same code path the pipeline runs).

Multi-GPU: ``torchrun --nproc_per_node 4 -m spatialflow.cli train --config FILE``.
"""

from __future__ import annotations

import argparse
import json

from spatialflow.cli import output_dir

HELP = "train one row from an experiment config (YAML); --resume continues from the latest checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config YAML (model, data, train, run, output_dir)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest readable checkpoint")
    parser.add_argument("--output-dir", type=run_folder, help="override output_dir of the config")
    parser.add_argument("--replace", action="store_true",
                        help="if output_dir holds a run of another training identity, move it aside to "
                             "<output_dir>.replaced-<time> (never deleted) instead of refusing")


def run_folder(text: str) -> str:
    """A run folder of its own (see ``ExperimentConfig.output_dir``), UTF-8, not an existing file."""
    from spatialflow.engine.config import run_folder_problem

    problem = run_folder_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid UTF-8; file names in a config must be UTF-8"
                                         ) from None
    return output_dir(text)


def run(args: argparse.Namespace) -> int:
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.engine.distributed import cleanup, is_main_process
    from spatialflow.engine.trainer import train

    cfg = load_experiment_config(args.config)
    if args.output_dir is not None:
        cfg.output_dir = args.output_dir
    try:
        result = train(cfg, resume=args.resume, replace=args.replace)
        if is_main_process():
            print(json.dumps({"final_model": str(result.final_model), "last_checkpoint": str(result.last_checkpoint),
                              "iterations": result.iterations, "start_iteration": result.start_iteration,
                              "seconds": round(result.seconds, 3),
                              "iterations_per_second": round(result.iterations_per_second, 4),
                              "last_losses": result.last_losses}, indent=2))
    finally:
        cleanup()
    return 0
