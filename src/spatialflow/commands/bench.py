"""``spatialflow bench {pq,model}``: benchmarks that print their figures as JSON."""

from __future__ import annotations

import argparse
import importlib

HELP = "run a benchmark (pq: PQ evaluator speed; model: SpatialFlow vs RetinaNet speed/FLOPs)"

# benchmark name -> module under spatialflow.benchmarks (each defines HELP, add_arguments, run)
BENCHMARKS = {"pq": "pq", "model": "model"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(f"spatialflow.benchmarks.{module_name}")
        bench = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(bench)
        bench.set_defaults(_bench=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench(args) or 0)
