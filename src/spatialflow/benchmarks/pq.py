"""``spatialflow bench pq``: speed of our PQ evaluator against hotcoco on the same synthetic files.

Writes N random GT/prediction pairs (about 20 segments each, crowd, void, relabels, shifts, missing and
extra segments) as COCO-panoptic PNG + JSON, then times, PNG decoding included:
our ``pq_compute`` with 1 worker and with all cores, and hotcoco's ``PanopticEval`` (if installed), one
after the other in every round (``spatialflow.benchmarks.interleave``). Prints as JSON each side's images/s
(its best round) with min / median / max over rounds, and our speed as a ratio to hotcoco's (ratio of the
best rounds) with the spread of the per-round ratios. ``--profile`` prints instead the milliseconds per
image of each stage of our evaluator (one process). The same generator feeds the hotcoco oracle test.
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

from spatialflow.benchmarks.interleave import rates, ratio, spread, time_interleaved
from spatialflow.data.panoptic_ids import id2rgb

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spatialflow.cli import positive_int, size_hw

    parser.add_argument("--images", type=positive_int, default=200, help="number of image pairs (default 200)")
    parser.add_argument("--size", type=size_hw(8, 8192), default="480x640",
                        help="HxW of the synthetic images, sides in [8, 8192] (default 480x640)")
    parser.add_argument("--segments", type=positive_int, default=20, help="GT segments per image (default 20)")
    parser.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="'all cores' (default: all)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds, best one kept (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="print milliseconds per image of each stage of our evaluator instead (best round)")


def profile_stages(paths: dict[str, Path], clock=time.perf_counter) -> dict[str, float]:
    """Milliseconds per image pair of each stage of our evaluator, in one process (no worker pool).

    Stages: reading both files, PNG decoding (libspng), the segments_info tables, the pairing kernel
    (ids from colours, segment slots, intersection counts) and the bookkeeping (panopticapi's matching
    rules, TP / FP / FN, IoU sums); ``total`` is their sum.
    """
    import pyspng

    from spatialflow.panoptic import pq

    categories, pairs = pq.load_image_pairs(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    accumulator = pq.PQAccumulator(categories)
    stages = dict.fromkeys(("read", "png_decode", "segments_info", "pairing", "bookkeeping"), 0.0)

    def timed(stage: str, function, *arguments):
        start = clock()
        result = function(*arguments)
        stages[stage] += clock() - start
        return result

    for pair in pairs:
        encoded = [timed("read", Path(png).read_bytes) for png in (pair.gt_png, pair.pred_png)]
        gt_rgb, pred_rgb = (timed("png_decode", pyspng.load, data, "RGB") for data in encoded)
        gt = timed("segments_info", pq._parse_segments, pair.gt_segments, accumulator._category_index, "gt")
        pred = timed("segments_info", pq._parse_segments, pair.pred_segments, accumulator._category_index, "pred")
        pixels = gt_rgb.shape[0] * gt_rgb.shape[1]
        counts = timed("pairing", pq._pair_counts, gt_rgb.reshape(pixels, 3), pred_rgb.reshape(pixels, 3),
                       gt.keys, pred.keys)
        timed("bookkeeping", accumulator._score, counts, gt, pred, gt_rgb, pred_rgb)
    figures = {stage: 1000 * seconds / len(pairs) for stage, seconds in stages.items()}
    figures["total"] = sum(figures.values())
    return figures


def _hotcoco(paths: dict[str, Path]):
    """hotcoco's PQ on the files as a call returning its results, or None when hotcoco is not installed."""
    try:
        from hotcoco.panoptic import PanopticEval
    except ImportError:
        return None

    def evaluate() -> dict:
        evaluation = PanopticEval(str(paths["gt_json"]), str(paths["pred_json"]),
                                  gt_folder=str(paths["gt_dir"]), pred_folder=str(paths["pred_dir"]))
        evaluation.evaluate()  # silent, unlike hotcoco's pq_compute, which prints a table
        return evaluation.results()

    return evaluate


def run(args: argparse.Namespace) -> int:
    from spatialflow.panoptic.pq import pq_compute

    height, width = args.size
    with tempfile.TemporaryDirectory(prefix="bench_pq_") as tmp:
        paths = write_random_pairs(tmp, args.images, height, width, segments=args.segments, seed=args.seed)
        if args.profile:
            profile_stages(paths)  # warm-up: numba's compiled kernel, page cache
            rounds = [profile_stages(paths) for _ in range(args.repeats)]
            best = min(rounds, key=lambda figures: figures["total"])
            print(json.dumps({"images": args.images, "size": f"{height}x{width}", "repeats": args.repeats,
                              "ms_per_image_best_round": best}, indent=2))
            return 0
        files = (paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
        sides = {"ours_1_worker": lambda: pq_compute(*files, workers=1, progress=False),
                 "ours_all_workers": lambda: pq_compute(*files, workers=args.workers, progress=False)}
        hotcoco = _hotcoco(paths)
        if hotcoco is not None:
            sides["hotcoco"] = hotcoco
        first = {name: call() for name, call in sides.items()}  # warm-up (numba's compiled kernel, page cache)
        seconds = time_interleaved(sides, args.repeats)  # ours, ours, hotcoco, ours, ...: same neighbours
    figures: dict = {"images": args.images, "size": f"{height}x{width}", "workers": args.workers,
                     "repeats": args.repeats}
    for name, values in seconds.items():
        figures[f"{name}_images_per_s"] = args.images / min(values)
        figures[f"{name}_images_per_s_spread"] = spread(rates(values, args.images))
    if hotcoco is None:
        figures["hotcoco_images_per_s"] = None
    else:
        for name in ("ours_all_workers", "ours_1_worker"):
            to_hotcoco = ratio(seconds["hotcoco"], seconds[name])  # time ratio hotcoco / ours = speed ours / hotcoco
            figures[f"ratio_{name}_to_hotcoco"] = to_hotcoco["ratio"]
            figures[f"ratio_{name}_to_hotcoco_per_repeat"] = to_hotcoco["per_round"]
        figures["max_abs_difference_pq_all"] = abs(first["ours_1_worker"]["All"]["pq"]
                                                   - 100 * first["hotcoco"]["All"]["pq"])
    figures["pq_all"] = first["ours_1_worker"]["All"]["pq"]
    print(json.dumps(figures, indent=2))
    return 0
