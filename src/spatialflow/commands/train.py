"""``spatialflow train``: one training row outside Kedro (the same code path the pipeline runs).

Multi-GPU: ``torchrun --nproc_per_node 4 -m spatialflow.cli train --config FILE``.
"""

from __future__ import annotations

import argparse
import json

HELP = "train one row from an experiment config (YAML); --resume continues from the latest checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config YAML (model, data, train, run, output_dir)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest readable checkpoint")
    parser.add_argument("--output-dir", help="override output_dir of the config")
    parser.add_argument("--replace", action="store_true",
                        help="if output_dir holds a run of another training identity, move it aside to "
                             "<output_dir>.replaced-<time> (never deleted) instead of refusing")


def run(args: argparse.Namespace) -> int:
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.engine.distributed import cleanup, is_main_process
    from spatialflow.engine.trainer import train

    cfg = load_experiment_config(args.config)
    if args.output_dir:
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
