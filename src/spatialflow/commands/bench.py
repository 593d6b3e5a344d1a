"""``spatialflow bench {pq,model}``: benchmarks that print their figures as JSON."""

from __future__ import annotations

import argparse
import importlib
import sys

HELP = "run a benchmark (pq: PQ evaluator speed; model: SpatialFlow vs RetinaNet speed/FLOPs; train: training step vs a plain ResNet)"

# benchmark name -> module under spatialflow.benchmarks (each defines HELP, add_arguments, run)
BENCHMARKS = {"pq": "pq", "model": "model", "train": "train_step"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    # Import only the benchmark being run (the model benchmark loads torch; the PQ one must not wait for it).
    wanted = next((a for a in sys.argv[1:] if a in BENCHMARKS), None)
    for name, module_name in BENCHMARKS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name)
            continue
        module = importlib.import_module(f"spatialflow.benchmarks.{module_name}")
        bench = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(bench)
        bench.set_defaults(_bench=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
