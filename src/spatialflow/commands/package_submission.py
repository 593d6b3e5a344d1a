"""``spatialflow package-submission``: build the COCO panoptic test-dev upload zip."""

from __future__ import annotations

import argparse

from spatialflow.cli import existing_dir, existing_file, output_dir
from spatialflow.panoptic.submission import name_field_problem, package_submission

HELP = "check COCO-panoptic predictions and zip them for the COCO test-dev evaluation server"


def name_field(text: str) -> str:
    """The method or split: a field of the upload's file names (``submission.name_field_problem``)."""
    problem = name_field_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred-json", required=True, type=existing_file,
                        help="predicted COCO-panoptic JSON (with categories)")
    parser.add_argument("--pred-dir", required=True, type=existing_dir, help="folder of predicted panoptic PNGs")
    parser.add_argument("--method", required=True, type=name_field,
                        help="algorithm name in the file names (letters, digits, '-')")
    parser.add_argument("--out-dir", required=True, type=output_dir,
                        help="where the results JSON and the zip are written")
    parser.add_argument("--split", default="test-dev2017", type=name_field,
                        help="split in the file names (letters, digits, '-'; default test-dev2017)")
    parser.add_argument("--image-info", type=existing_file,
                        help="image_info_test-dev2017.json: check every image has a prediction")


def run(args: argparse.Namespace) -> int:
    json_path, zip_path = package_submission(args.pred_json, args.pred_dir, args.out_dir, args.method,
                                             split=args.split, image_info_json=args.image_info)
    print(f"wrote {json_path}\nwrote {zip_path} (upload this file)")
    return 0
