"""``spatialflow validate-data``: check a COCO-panoptic set; one line per bad file."""

from __future__ import annotations

import argparse
import sys

from spatialflow.cli import existing_dir, existing_file
from spatialflow.data.validate import validate_panoptic

HELP = "check a COCO-panoptic data set (JSON, PNGs, images); exit 1 and one line per bad file if invalid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, type=existing_file, help="panoptic JSON")
    parser.add_argument("--png-dir", required=True, type=existing_dir, help="folder of panoptic PNGs")
    parser.add_argument("--image-dir", default=None, type=existing_dir,
                        help="folder of images (optional: checks their sizes)")


def run(args: argparse.Namespace) -> int:
    problems = validate_panoptic(args.json, args.png_dir, args.image_dir)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {args.json}", file=sys.stderr)
        return 1
    print(f"{args.json}: OK")
    return 0
