"""``spatialflow bench pq``: speed of our PQ evaluator against hotcoco on the same synthetic files.

Writes N random GT/prediction pairs (about 20 segments each, crowd, void, relabels, shifts, missing and
extra segments) as COCO-panoptic PNG + JSON, then times, PNG decoding included:
our ``pq_compute`` with 1 worker and with all cores, and ``hotcoco.panoptic.pq_compute`` (if installed).
Prints the images/s figures and the ratios as JSON. The same generator feeds the hotcoco oracle test.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from spatialflow.panoptic.ids import id2rgb

HELP = "PQ evaluator speed (images/s, 1 worker and all cores) against hotcoco on synthetic PNGs"

#: Synthetic categories: 6 things, 4 stuff (ids chosen apart so that a wrong mapping shows).
RANDOM_CATEGORIES: list[dict] = [
    {"id": i, "name": f"thing{i}", "isthing": 1} for i in (1, 2, 3, 5, 8, 13)
] + [{"id": i, "name": f"stuff{i}", "isthing": 0} for i in (101, 102, 110, 120)]


def _random_rectangle(rng: np.random.Generator, height: int, width: int) -> tuple[slice, slice]:
    h = int(rng.integers(max(1, height // 10), max(2, height // 2)))
    w = int(rng.integers(max(1, width // 10), max(2, width // 2)))
    y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return slice(y, y + h), slice(x, x + w)


def _random_gt(rng: np.random.Generator, height: int, width: int, segments: int):
    """A compact label map (0 = void, k = segment k) and the segment table [(category_id, iscrowd)]."""
    things = [c["id"] for c in RANDOM_CATEGORIES if c["isthing"]]
    stuff = [c["id"] for c in RANDOM_CATEGORIES if not c["isthing"]]
    table: list[tuple[int, int]] = [(0, 0)]
    labels = np.zeros((height, width), dtype=np.int32)
    n_stuff = min(3, segments)
    bounds = np.linspace(0, height, n_stuff + 1).astype(int)
    for s in range(n_stuff):  # horizontal stuff bands
        table.append((int(rng.choice(stuff)), 0))
        labels[bounds[s] : bounds[s + 1]] = len(table) - 1
    for _ in range(segments - n_stuff):  # things painted on top (some vanish under later ones)
        table.append((int(rng.choice(things)), int(rng.random() < 0.1)))
        labels[_random_rectangle(rng, height, width)] = len(table) - 1
    for _ in range(int(rng.integers(0, 3))):  # void regions
        labels[_random_rectangle(rng, height // 2, width // 2)] = 0
    return labels, table


def _random_prediction(rng: np.random.Generator, gt_labels: np.ndarray, gt_table: list[tuple[int, int]]):
    """Edit the GT per segment: keep, drop, relabel or shift; then add extra segments and void."""
    height, width = gt_labels.shape
    all_ids = [c["id"] for c in RANDOM_CATEGORIES]
    table: list[tuple[int, int]] = [(0, 0)]
    labels = np.zeros_like(gt_labels)
    for k in range(1, len(gt_table)):
        mask = gt_labels == k
        action = rng.random()
        if action < 0.15:  # missing segment
            continue
        category = gt_table[k][0] if action < 0.8 else int(rng.choice(all_ids))  # 20 %: relabelled
        table.append((category, 0))
        if 0.6 < action < 0.8:  # shifted
            mask = np.roll(mask, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        labels[mask] = len(table) - 1
    for _ in range(int(rng.integers(0, 4))):  # extra segments
        table.append((int(rng.choice(all_ids)), 0))
        labels[_random_rectangle(rng, height, width)] = len(table) - 1
    if rng.random() < 0.3:  # void in the prediction
        labels[_random_rectangle(rng, height, width)] = 0
    return labels, table


def _write_annotation(labels: np.ndarray, table, rng, png_path: Path, image_id: int, with_area: bool) -> dict:
    """Random unique ids for the segments present; write the PNG; return the annotation."""
    areas = np.bincount(labels.reshape(-1), minlength=len(table))
    present = [k for k in range(1, len(table)) if areas[k] > 0]
    ids = rng.choice(np.arange(1, 256**3), size=len(present), replace=False)
    lut = np.zeros(len(table), dtype=np.int64)
    lut[present] = ids
    Image.fromarray(id2rgb(lut[labels])).save(png_path)
    segments = []
    for k, segment_id in zip(present, ids.tolist()):
        segment = {"id": segment_id, "category_id": table[k][0], "iscrowd": table[k][1]}
        if with_area:
            segment["area"] = int(areas[k])
        segments.append(segment)
    return {"image_id": image_id, "file_name": png_path.name, "segments_info": segments}


def write_random_pairs(out_dir: str | os.PathLike, num_images: int, height: int, width: int, *,
                       segments: int = 20, seed: int = 0) -> dict[str, Path]:
    """Write random GT and prediction sets; returns {"gt_json", "gt_dir", "pred_json", "pred_dir"}."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    paths = {"gt_json": out / "gt.json", "gt_dir": out / "gt", "pred_json": out / "pred.json", "pred_dir": out / "pred"}
    paths["gt_dir"].mkdir(parents=True, exist_ok=True)
    paths["pred_dir"].mkdir(parents=True, exist_ok=True)
    images, gt_annotations, pred_annotations = [], [], []
    for image_id in range(1, num_images + 1):
        name = f"{image_id:06d}.png"
        gt_labels, gt_table = _random_gt(rng, height, width, segments)
        pred_labels, pred_table = _random_prediction(rng, gt_labels, gt_table)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        gt_annotations.append(_write_annotation(gt_labels, gt_table, rng, paths["gt_dir"] / name, image_id, True))
        pred_annotations.append(
            _write_annotation(pred_labels, pred_table, rng, paths["pred_dir"] / name, image_id, False)
        )
    for key, annotations in (("gt_json", gt_annotations), ("pred_json", pred_annotations)):
        with open(paths[key], "w", encoding="utf-8") as handle:
            json.dump({"images": images, "annotations": annotations, "categories": RANDOM_CATEGORIES}, handle)
    return paths


def _images_per_second(function, num_images: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return num_images / best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=200, help="number of image pairs (default 200)")
    parser.add_argument("--size", default="480x640", help="HxW of the synthetic images (default 480x640)")
    parser.add_argument("--segments", type=int, default=20, help="GT segments per image (default 20)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="'all cores' (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best one kept (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from spatialflow.panoptic.pq import pq_compute

    height, width = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_pq_") as tmp:
        paths = write_random_pairs(tmp, args.images, height, width, segments=args.segments, seed=args.seed)
        files = (paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        figures: dict = {"images": args.images, "size": f"{height}x{width}", "workers": args.workers}
        ours = pq_compute(*files, workers=1, progress=False)
        figures["ours_1_worker_images_per_s"] = _images_per_second(
            lambda: pq_compute(*files, workers=1, progress=False), args.images, args.repeats)
        figures["ours_all_workers_images_per_s"] = _images_per_second(
            lambda: pq_compute(*files, workers=args.workers, progress=False), args.images, args.repeats)
        try:
            from hotcoco.panoptic import PanopticEval
        except ImportError:
            figures["hotcoco_images_per_s"] = None
        else:
            def hotcoco_pq() -> dict:
                evaluation = PanopticEval(str(paths["gt_json"]), str(paths["pred_json"]),
                                          gt_folder=str(paths["gt_dir"]), pred_folder=str(paths["pred_dir"]))
                evaluation.evaluate()  # silent, unlike hotcoco's pq_compute, which prints a table
                return evaluation.results()

            reference = hotcoco_pq()
            figures["hotcoco_images_per_s"] = _images_per_second(hotcoco_pq, args.images, args.repeats)
            figures["ratio_ours_all_workers_to_hotcoco"] = (
                figures["ours_all_workers_images_per_s"] / figures["hotcoco_images_per_s"])
            figures["ratio_ours_1_worker_to_hotcoco"] = (
                figures["ours_1_worker_images_per_s"] / figures["hotcoco_images_per_s"])
            figures["max_abs_difference_pq_all"] = abs(ours["All"]["pq"] - 100 * reference["All"]["pq"])
        figures["pq_all"] = ours["All"]["pq"]
    print(json.dumps(figures, indent=2))
    return 0
