"""``spatialflow generate-synthetic``: write a synthetic COCO-panoptic data set."""

from __future__ import annotations

import argparse

from spatialflow.cli import positive_int, size_hw
from spatialflow.data.synthetic import MAX_SIZE, MIN_SIZE, PRESETS, generate_synthetic
from spatialflow.errors import ConfigError

HELP = "generate synthetic panoptic data (train/val/test-dev) in COCO-panoptic format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Every split gets at least one image: validate-data and evaluate refuse a JSON without annotations.
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes-coco")
    parser.add_argument("--out", required=True, help="output folder (images/, annotations/)")
    parser.add_argument("--num-train", type=positive_int, default=200, help="images in the train split (>= 1)")
    parser.add_argument("--num-val", type=positive_int, default=50, help="images in the val split (>= 1)")
    parser.add_argument("--num-test", type=positive_int, default=50, help="images in the test-dev split (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=size_hw(MIN_SIZE, MAX_SIZE), default=None,
                        help=f"image size HxW, both sides in [{MIN_SIZE}, {MAX_SIZE}] "
                             "(default: 128x128 for shapes-coco, 96x192 for shapes-cityscapes)")


def run(args: argparse.Namespace) -> int:
    try:
        splits = generate_synthetic(args.out, args.preset, args.num_train, args.num_val, args.num_test,
                                    args.seed, args.size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for split, paths in splits.items():
        print(f"{split}: {paths.json_path}")
    return 0
