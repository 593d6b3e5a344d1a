"""``spatialflow convert-cityscapes``: Cityscapes (official layout) -> COCO-panoptic."""

from __future__ import annotations

import argparse

from spatialflow.data.cityscapes import convert_cityscapes

HELP = "convert Cityscapes gtFine instanceIds to COCO-panoptic with cityscapesscripts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="Cityscapes root holding leftImg8bit/ and gtFine/")
    parser.add_argument("--out", required=True, help="output folder (annotations/panoptic_<split>.json + PNGs)")
    parser.add_argument("--splits", nargs="+", default=["val"], help="splits to convert (default: val)")


def run(args: argparse.Namespace) -> int:
    for split, paths in convert_cityscapes(args.root, args.out, tuple(args.splits)).items():
        print(f"{split}: {paths.json_path} (images in {paths.image_dir})")
    return 0
