"""``spatialflow clean-replaced``: list, and on confirmation remove, run folders moved aside by training.

Training never deletes a run: a folder whose training identity changed is renamed to
``<output_dir>.replaced-<time>``. This command is the one place that removes such folders.
"""

from __future__ import annotations

import argparse
import shutil
import sys

HELP = "list run folders moved aside (<run>.replaced-<time>) under a folder; remove them with --yes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default="data/06_models", help="folder to search (default: %(default)s)")
    parser.add_argument("--yes", action="store_true", help="remove them without asking")


def _size(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(args: argparse.Namespace) -> int:
    from spatialflow.engine.run_dir import replaced_runs

    found = replaced_runs(args.root)
    if not found:
        print(f"{args.root}: no replaced runs")
        return 0
    total = 0
    for path in found:
        size = _size(path)
        total += size
        print(f"{path}  ({size / 2**20:.1f} MiB)")
    print(f"{len(found)} replaced run(s), {total / 2**20:.1f} MiB")
    if not args.yes:
        if not sys.stdin.isatty():
            print("not removed: pass --yes to remove them")
            return 0
        if input("remove them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not removed")
            return 0
    for path in found:
        shutil.rmtree(path)
    print(f"removed {len(found)} replaced run(s)")
    return 0
