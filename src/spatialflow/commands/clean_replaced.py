"""``spatialflow clean-replaced``: list the run folders that training moved aside, and how to remove them.

Training never deletes a run: a folder whose training identity changed is renamed to
``<output_dir>.replaced-<time>``. This command lists those folders with their sizes and prints the one
command that would remove them; the code itself deletes nothing a user trained.
"""

from __future__ import annotations

import argparse
import shlex

HELP = "list run folders moved aside (<run>.replaced-<time>) under a folder, and the command to remove them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spatialflow.cli import existing_dir

    parser.add_argument("root", nargs="?", type=existing_dir, default="data/runs",
                        help="folder to search, which must exist (default: %(default)s)")


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
    print(f"{len(found)} replaced run(s), {total / 2**20:.1f} MiB; nothing was removed. To remove them:")
    print("rm -rf " + " ".join(shlex.quote(str(p)) for p in found))
    return 0
