"""spatialflow: SpatialFlow panoptic segmentation outside the pipeline (data, training, evaluation).

One entry point, one module per sub-command.

Each sub-command lives in ``spatialflow/commands/<name>.py`` and defines

    HELP: str                                   one line for ``spatialflow --help``
    def add_arguments(parser) -> None           its argparse options
    def run(args) -> int                        the work; returns the exit code

Modules are imported only when their command runs, so ``spatialflow evaluate`` never loads torch.

Every error is one line on stderr, ``spatialflow <command>: error: <file or option>: <what is wrong>``:
argparse ``type=`` functions below check numbers and paths (exit 2), the package's errors and OS errors
are printed the same way (exit 2), and validate-data exits 1 with one line per bad file.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "clean-replaced": "clean_replaced",
    "predict": "predict",
    "bench": "bench",
}


# --------------------------------------------------------------------------- argparse types (one-line errors)


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, worker counts, sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; expected an integer >= 1")
    return value


def size_hw(low: int, high: int):
    """An argparse type: ``HxW`` (e.g. ``96x192``) -> (height, width), both sides integers in [low, high]."""

    def size(text: str) -> tuple[int, int]:
        try:
            height, width = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a size; expected HxW (e.g. 128x128)") from None
        if not (low <= height <= high and low <= width <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range; expected HxW with both sides in [{low}, {high}]")
        return height, width

    return size


def existing_file(text: str) -> str:
    """A path that exists and is a file."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a folder; expected a file")
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{text}: file not found")
    return text


def existing_dir(text: str) -> str:
    """A path that exists and is a folder."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a file; expected a folder")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: folder not found")
    return text


def output_file(text: str) -> str:
    """A file to (over)write: not an existing folder, and not inside an existing file."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a folder; expected a file name to write")
    _check_parents(text)
    return text


def output_dir(text: str) -> str:
    """A folder to write into (created if missing): not an existing file."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a file; expected a folder (created if missing)")
    _check_parents(text)
    return text


def _check_parents(text: str) -> None:
    parent = os.path.dirname(os.path.abspath(text))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file; expected a folder there")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``spatialflow <command>: error: ...``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load(name: str):
    return importlib.import_module(f"spatialflow.commands.{COMMANDS[name]}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="spatialflow", description=__doc__.splitlines()[0])
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
    except (SpatialFlowError, OSError) as exc:  # OSError: e.g. "[Errno 13] Permission denied: 'out/x.json'"
        print(f"spatialflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
