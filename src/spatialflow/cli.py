"""spatialflow: SpatialFlow panoptic segmentation outside the pipeline (data, training, evaluation).

One entry point, one module per sub-command.

Each sub-command lives in ``spatialflow/commands/<name>.py`` and defines

    HELP: str                                   one line for ``spatialflow --help``
    def add_arguments(parser) -> None           its argparse options
    def run(args) -> int                        the work; returns the exit code

Modules are imported only when their command runs, so ``spatialflow evaluate`` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from spatialflow.errors import SpatialFlowError

# command name -> module under spatialflow.commands
COMMANDS: dict[str, str] = {
    "generate-synthetic": "generate_synthetic",
    "validate-data": "validate_data",
    "convert-cityscapes": "convert_cityscapes",
    "evaluate": "evaluate",
    "package-submission": "package_submission",
    "train": "train",
    "predict": "predict",
    "bench": "bench",
}


def _load(name: str):
    return importlib.import_module(f"spatialflow.commands.{COMMANDS[name]}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatialflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Only import the module of the command being run (plus cheap help text for the rest).
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name in COMMANDS:
        if wanted is not None and name != wanted:
            sub.add_parser(name)
            continue
        module = _load(name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (SpatialFlowError, FileNotFoundError) as exc:
        print(f"spatialflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
