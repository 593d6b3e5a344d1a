"""``spatialflow evaluate``: PQ / SQ / RQ of COCO-panoptic predictions, panopticapi's rules."""

from __future__ import annotations

import argparse
import os
import sys

from spatialflow.cli import existing_dir, existing_file, output_file, positive_int
from spatialflow.panoptic.pq import pq_compute
from spatialflow.utils.atomic import atomic_write_json

HELP = "compute PQ/SQ/RQ (All/Things/Stuff, per class) of COCO-panoptic predictions against ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, type=existing_file, help="ground-truth COCO-panoptic JSON")
    parser.add_argument("--gt-dir", required=True, type=existing_dir, help="folder of ground-truth panoptic PNGs")
    parser.add_argument("--pred-json", required=True, type=existing_file, help="predicted COCO-panoptic JSON")
    parser.add_argument("--pred-dir", required=True, type=existing_dir, help="folder of predicted panoptic PNGs")
    parser.add_argument("--json-out", type=output_file, help="write the numbers (per class included) to this JSON file")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help=f"processes (default 1; this machine has {os.cpu_count()} cores)")


def format_table(result: dict) -> str:
    """The panopticapi-style table: one row per All / Things / Stuff with PQ, SQ, RQ (percent) and N."""
    lines = [f"{'':10s}|{'PQ':>7s}{'SQ':>7s}{'RQ':>7s}{'N':>6s}", "-" * 38]
    for group in ("All", "Things", "Stuff"):
        row = result[group]
        lines.append(f"{group:10s}|{row['pq']:7.1f}{row['sq']:7.1f}{row['rq']:7.1f}{row['n']:6d}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = pq_compute(args.gt_json, args.gt_dir, args.pred_json, args.pred_dir, workers=args.workers,
                        progress=sys.stderr.isatty())  # no progress lines in logs / around an error line
    print(format_table(result))
    if args.json_out:
        atomic_write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
    return 0


