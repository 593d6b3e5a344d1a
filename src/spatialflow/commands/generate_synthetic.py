"""``spatialflow generate-synthetic``: write a synthetic COCO-panoptic data set."""

from __future__ import annotations

import argparse

from spatialflow.data.synthetic import PRESETS, generate_synthetic
from spatialflow.errors import ConfigError

HELP = "generate synthetic panoptic data (train/val/test-dev) in COCO-panoptic format"


def parse_size(text: str) -> tuple[int, int]:
    """'96x192' -> (96, 192)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 128x128), got {text!r}") from None
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes-coco")
    parser.add_argument("--out", required=True, help="output folder (images/, annotations/)")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--num-test", type=int, default=50, help="images in the test-dev split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default=None,
                        help="image size HxW (default: 128x128 for shapes-coco, 96x192 for shapes-cityscapes)")


def run(args: argparse.Namespace) -> int:
    try:
        splits = generate_synthetic(args.out, args.preset, args.num_train, args.num_val, args.num_test,
                                    args.seed, args.size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for split, paths in splits.items():
        print(f"{split}: {paths.json_path}")
    return 0
