"""Panoptic quality (PQ = SQ * RQ), computed exactly as the official COCO panoptic evaluator.

The rules of cocodataset/panopticapi ``evaluation.py`` (not on PyPI, so implemented here), per image:

1. Segments are the ids listed in an annotation's ``segments_info``; pixels with id 0 that are not listed
   are void. A predicted segment's area is counted in its PNG; a ground-truth segment's area is the
   JSON ``area`` (counted in the PNG when the JSON has none).
2. A GT segment ``g`` and a predicted segment ``p`` of the same category match when
   ``IoU = |g & p| / (|p| + |g| - |g & p| - |void & p|) > 0.5``: void pixels are removed from the
   prediction. IoU > 0.5 makes the matching unique. Crowd GT segments (``iscrowd = 1``) never match.
3. Matched pairs are true positives (TP) and add their IoU to their category.
4. An unmatched non-crowd GT segment is a false negative (FN); crowd GT segments are never FN.
5. An unmatched predicted segment is a false positive (FP) unless more than half of it lies on void
   pixels plus the crowd GT region of its own category (the last crowd segment of that category
   listed in the GT ``segments_info``, as in panopticapi).

Per category: ``PQ = sum IoU / (TP + FP/2 + FN/2)``, ``SQ = sum IoU / TP`` (0 without TP),
``RQ = TP / (TP + FP/2 + FN/2)``. All / Things / Stuff average the categories that occur (TP + FP + FN
> 0) in the GT JSON's category order. Values are reported in percent.

Beyond panopticapi, inconsistent input is an error that names the file: a GT image without a prediction,
a prediction for an image absent from the GT, PNG ids missing from the JSON and JSON ids missing from the
PNG, unknown categories, duplicate segment ids, GT / prediction PNGs of different sizes. Both JSONs get
validate-data's checks (``coco_panoptic.check_panoptic_json``: types before values; an empty ground truth is
an error, not PQ 0), every PNG must be an 8-bit RGB(A) PNG, and the GT PNG must match its JSON height x width.

Speed: libspng (``ids.read_panoptic_rgb``, the decoder behind the repository's one PNG-id reader
``ids.read_segment_ids``) decodes a PNG to packed RGB; one compiled pass over the pixels of both PNGs
(numba, ``_pair_counts``) forms each id from its colour, looks up its segment slot where the id changes and
counts every (GT, prediction) intersection at once: row / column sums are the areas (per-stage profile:
``spatialflow bench pq --profile``, docs/benchmarks.md). Memory is one image pair at a time;
``workers > 1`` spreads fixed-size chunks of images over processes. Chunks are summed in image order, so
the result does not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from tqdm import tqdm

from spatialflow.data.coco_panoptic import load_panoptic_json, size_check_of
from spatialflow.errors import DataError
from spatialflow.data.panoptic_ids import ids_from_rgb, read_panoptic_rgb

MATCH_IOU = 0.5
#: The paper's columns -> where :func:`pq_compute`'s result holds them: (group, measure).
PAPER_COLUMNS = {"pq": ("All", "pq"), "pq_th": ("Things", "pq"), "pq_st": ("Stuff", "pq"),
                 "sq": ("All", "sq"), "rq": ("All", "rq")}
#: Segment ids are < 256**3 (three PNG bytes).
_ID_LIMIT = 256**3
_UNKNOWN = -1  # key of the slot that collects unlisted ids
#: Images per task for multi-process evaluation (fixed, so the summation order never depends on workers).
CHUNK_SIZE = 32


class _ImageError(Exception):
    """A problem in one image pair: ``side`` is 'gt' or 'pred', ``part`` is 'png' or 'json'."""

    def __init__(self, side: str, part: str, problem: str) -> None:
        super().__init__(problem)
        self.side, self.part, self.problem = side, part, problem


@dataclass
class _Segments:
    """One image's segments, indexed like its key table ``keys`` = [unknown, 0, sorted listed ids].

    Slot 0 collects pixels whose id is not listed (an error), slot 1 is id 0 (void unless listed).
    """

    keys: np.ndarray  # int64, sorted
    listed: np.ndarray  # bool: key is a segment of segments_info
    category: np.ndarray  # int64 category position, -1 when not listed
    crowd: np.ndarray  # bool
    json_area: np.ndarray  # int64 JSON area, -1 when absent
    crowd_by_category: dict[int, int]  # category position -> key index of its (last) crowd segment


def paper_columns(result: dict) -> dict[str, float]:
    """:func:`pq_compute`'s result as the paper's columns ``{"pq", "pq_th", "pq_st", "sq", "rq"}``; a
    KeyError or TypeError names what is missing."""
    return {column: float(result[group][measure]) for column, (group, measure) in PAPER_COLUMNS.items()}


def _parse_segments(segments: Sequence[dict], category_index: dict[int, int], side: str) -> _Segments:
    ids: list[int] = []
    for segment in segments:
        try:
            segment_id = int(segment["id"])
            category_id = int(segment["category_id"])
        except (KeyError, TypeError, ValueError):
            raise _ImageError(side, "json", f"segment {segment!r} lacks an integer 'id' or 'category_id'") from None
        if not 0 <= segment_id < _ID_LIMIT:
            raise _ImageError(side, "json", f"segment id {segment_id} outside [0, 256**3)")
        if category_id not in category_index:
            raise _ImageError(side, "json", f"segment {segment_id} has unknown category_id {category_id}")
        ids.append(segment_id)
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise _ImageError(side, "json", f"duplicate segment ids {duplicates}")

    keys = np.array([_UNKNOWN, *sorted(set(ids) | {0})], dtype=np.int64)
    position = {int(k): i for i, k in enumerate(keys)}
    listed = np.zeros(len(keys), dtype=bool)
    category = np.full(len(keys), -1, dtype=np.int64)
    crowd = np.zeros(len(keys), dtype=bool)
    json_area = np.full(len(keys), -1, dtype=np.int64)
    crowd_by_category: dict[int, int] = {}
    for segment in segments:
        k = position[int(segment["id"])]
        listed[k] = True
        category[k] = category_index[int(segment["category_id"])]
        crowd[k] = bool(segment.get("iscrowd", 0))
        if segment.get("area") is not None:
            json_area[k] = int(segment["area"])
        if crowd[k]:
            crowd_by_category[int(category[k])] = k  # the last one wins, as in panopticapi
    return _Segments(keys, listed, category, crowd, json_area, crowd_by_category)


@numba.njit(cache=True, nogil=True)
def _slot(keys: np.ndarray, segment_id: int) -> int:
    """Index of ``segment_id`` in ``keys`` = [unknown, 0, sorted listed ids]; 0 (unknown) when absent."""
    position = np.searchsorted(keys[1:], segment_id)
    if position < len(keys) - 1 and keys[position + 1] == segment_id:
        return position + 1
    return 0


@numba.njit(cache=True, nogil=True)
def _pixel_id(values: np.ndarray, k: int) -> int:
    """Segment id of pixel ``k`` of (pixels, 1) ids or (pixels, 3) uint8 colours (R + 256 G + 65536 B)."""
    if values.shape[1] == 3:
        return np.int64(values[k, 0]) | (np.int64(values[k, 1]) << 8) | (np.int64(values[k, 2]) << 16)
    return np.int64(values[k, 0])


@numba.njit(cache=True, nogil=True)
def _pair_counts(gt: np.ndarray, pred: np.ndarray, gt_keys: np.ndarray, pred_keys: np.ndarray) -> np.ndarray:
    """(len(gt_keys), len(pred_keys)) pixel counts of every (GT slot, prediction slot) pair, in one pass.

    ``gt`` and ``pred`` are (pixels, 1) ids or (pixels, 3) uint8 colours. Neighbouring pixels mostly repeat
    their pair of ids: a run of equal pairs is counted once when it ends, and a slot is looked up only
    where an id changes. Row sums are the GT PNG areas, column sums the predicted areas, row 1 (id 0) the
    void overlaps.
    """
    counts = np.zeros((len(gt_keys), len(pred_keys)), dtype=np.int64)
    last_gt, last_pred = -1, -1  # no id: the first pixel starts a run
    g, p, run = 0, 0, 0
    for k in range(gt.shape[0]):
        gt_id, pred_id = _pixel_id(gt, k), _pixel_id(pred, k)
        if gt_id == last_gt and pred_id == last_pred:
            run += 1
            continue
        counts[g, p] += run
        run = 1
        if gt_id != last_gt:
            last_gt, g = gt_id, _slot(gt_keys, gt_id)
        if pred_id != last_pred:
            last_pred, p = pred_id, _slot(pred_keys, pred_id)
    counts[g, p] += run
    return counts


def _as_ids_of(values: np.ndarray) -> np.ndarray:
    """(H, W) ids of an id map or of (H, W, 3) colours."""
    return ids_from_rgb(values) if values.ndim == 3 else values


def _unknown_ids_error(ids: np.ndarray, table: _Segments, side: str) -> _ImageError:
    unknown = np.setdiff1d(np.unique(ids), table.keys)
    shown = ", ".join(str(int(u)) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    return _ImageError(side, "png", f"segment ids {shown} are in the PNG but not in the JSON segments_info")


def _as_ids(ids: Any, side: str) -> np.ndarray:
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise _ImageError(side, "png", f"expected an (H, W) integer id map, got {ids.dtype} {ids.shape}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= _ID_LIMIT):
        raise _ImageError(side, "png", "segment ids must lie in [0, 256**3)")
    return ids.astype(np.intp, copy=False)


class PQAccumulator:
    """Streaming PQ statistics (TP, FP, FN, summed IoU per category) over any number of images."""

    def __init__(self, categories: list[dict]) -> None:
        self.categories = [dict(c) for c in categories]
        self._category_index = {int(c["id"]): i for i, c in enumerate(self.categories)}
        if len(self._category_index) != len(self.categories):
            raise ValueError("duplicate category ids")
        n = len(self.categories)
        self.tp = np.zeros(n, dtype=np.int64)
        self.fp = np.zeros(n, dtype=np.int64)
        self.fn = np.zeros(n, dtype=np.int64)
        self.iou = np.zeros(n, dtype=np.float64)
        self.images = 0

    def add(
        self,
        gt_ids: Any,
        gt_segments: Sequence[dict],
        pred_ids: Any,
        pred_segments: Sequence[dict],
        *,
        name: str = "image",
    ) -> None:
        """Add one image: (H, W) id maps and their ``segments_info`` lists (COCO-panoptic fields).

        ``name`` labels the image in error messages (DataError).
        """
        try:
            self._add(_as_ids(gt_ids, "gt"), gt_segments, _as_ids(pred_ids, "pred"), pred_segments)
        except _ImageError as err:
            side = "ground truth" if err.side == "gt" else "prediction"
            raise DataError(f"{name} ({side} {'ids' if err.part == 'png' else 'segments'})", err.problem) from None

    def _add(self, gt_values: np.ndarray, gt_segments: Sequence[dict], pred_values: np.ndarray,
             pred_segments: Sequence[dict]) -> None:
        """One image from (H, W) intp ids or (H, W, 3) uint8 colours (both sides alike)."""
        gt_shape, pred_shape = gt_values.shape[:2], pred_values.shape[:2]
        if gt_shape != pred_shape:
            raise _ImageError("pred", "png", f"size {pred_shape} differs from the ground truth's {gt_shape}")
        gt = _parse_segments(gt_segments, self._category_index, "gt")
        pred = _parse_segments(pred_segments, self._category_index, "pred")
        pixels = gt_shape[0] * gt_shape[1]
        counts = _pair_counts(gt_values.reshape(pixels, -1), pred_values.reshape(pixels, -1), gt.keys, pred.keys)
        self._score(counts, gt, pred, gt_values, pred_values)

    def _score(self, counts: np.ndarray, gt: _Segments, pred: _Segments, gt_values: np.ndarray,
               pred_values: np.ndarray) -> None:
        """The panopticapi rules on the pair counts: matches, TP / FP / FN and IoU sums per category."""
        gt_png_area = counts.sum(axis=1)
        pred_area = counts.sum(axis=0)
        if gt_png_area[0]:
            raise _unknown_ids_error(_as_ids_of(gt_values), gt, "gt")
        if pred_area[0]:
            raise _unknown_ids_error(_as_ids_of(pred_values), pred, "pred")
        for side, table, area in (("gt", gt, gt_png_area), ("pred", pred, pred_area)):
            absent = table.keys[table.listed & (area == 0)]
            if len(absent):
                raise _ImageError(side, "png", f"segment ids {absent.tolist()} are in the JSON but not in the PNG")
        gt_area = np.where(gt.json_area >= 0, gt.json_area, gt_png_area)
        void_overlap = counts[1]  # slot 1 is id 0: the GT's void pixels under each prediction

        candidates = (
            (gt.listed & ~gt.crowd)[:, None]
            & pred.listed[None, :]
            & (gt.category[:, None] == pred.category[None, :])
            & (counts > 0)
        )
        union = pred_area[None, :] + gt_area[:, None] - counts - void_overlap[None, :]
        iou = np.zeros(counts.shape, dtype=np.float64)
        np.divide(counts, union, out=iou, where=candidates & (union > 0))
        matched_gt, matched_pred = np.nonzero(iou > MATCH_IOU)  # row-major: panopticapi's (gt, pred) order
        for g, p in zip(matched_gt.tolist(), matched_pred.tolist()):
            c = gt.category[g]
            self.tp[c] += 1
            self.iou[c] += iou[g, p]

        gt_unmatched = gt.listed & ~gt.crowd
        gt_unmatched[matched_gt] = False
        np.add.at(self.fn, gt.category[gt_unmatched], 1)

        pred_unmatched = pred.listed.copy()
        pred_unmatched[matched_pred] = False
        for p in np.flatnonzero(pred_unmatched).tolist():
            c = int(pred.category[p])
            ignored = int(void_overlap[p])
            if c in gt.crowd_by_category:
                ignored += int(counts[gt.crowd_by_category[c], p])
            if ignored / pred_area[p] > 0.5:
                continue
            self.fp[c] += 1
        self.images += 1

    def merge(self, other: PQAccumulator) -> None:
        """Add another accumulator's statistics (same categories) to this one."""
        if [c["id"] for c in other.categories] != [c["id"] for c in self.categories]:
            raise ValueError("cannot merge PQ accumulators over different categories")
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.iou += other.iou
        self.images += other.images

    def summary(self) -> dict:
        """``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {category id: {...}}}`` in percent."""
        per_class: dict[str, dict] = {}
        fractions: list[tuple[bool, float, float, float] | None] = []
        for i, category in enumerate(self.categories):
            tp, fp, fn, iou = int(self.tp[i]), int(self.fp[i]), int(self.fn[i]), float(self.iou[i])
            if tp + fp + fn == 0:
                pq = sq = rq = 0.0
                fractions.append(None)
            else:
                pq = iou / (tp + 0.5 * fp + 0.5 * fn)
                sq = iou / tp if tp != 0 else 0.0
                rq = tp / (tp + 0.5 * fp + 0.5 * fn)
                fractions.append((bool(category.get("isthing")), pq, sq, rq))
            per_class[str(category["id"])] = {
                "name": category.get("name", str(category["id"])),
                "isthing": bool(category.get("isthing")),
                "pq": 100 * pq, "sq": 100 * sq, "rq": 100 * rq,
                "tp": tp, "fp": fp, "fn": fn,
            }
        result: dict[str, Any] = {}
        for group, wanted in (("All", None), ("Things", True), ("Stuff", False)):
            pq = sq = rq = 0.0
            n = 0
            for entry in fractions:
                if entry is None or (wanted is not None and entry[0] != wanted):
                    continue
                n += 1
                pq += entry[1]
                sq += entry[2]
                rq += entry[3]
            if n == 0:
                result[group] = {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
            else:
                result[group] = {"pq": 100 * (pq / n), "sq": 100 * (sq / n), "rq": 100 * (rq / n), "n": n}
        result["per_class"] = per_class
        return result


# ---------------------------------------------------------------------------------------------------
# Files: COCO-panoptic JSON + PNG folders.


@dataclass(frozen=True)
class _ImagePair:
    image_id: Any
    gt_png: str
    gt_segments: list
    pred_png: str
    pred_segments: list
    gt_json: str
    pred_json: str
    gt_image: dict | None = None  # the GT JSON's image entry (height / width checked against the GT PNG)


def _annotations_by_image(data: dict, path: str | os.PathLike) -> dict[Any, dict]:
    by_image: dict[Any, dict] = {}
    for annotation in data["annotations"]:
        if not isinstance(annotation, dict) or not {"image_id", "file_name", "segments_info"} <= annotation.keys():
            raise DataError(path, f"annotation lacks image_id, file_name or segments_info: {str(annotation)[:200]}")
        if annotation["image_id"] in by_image:
            raise DataError(path, f"two annotations for image {annotation['image_id']}")
        by_image[annotation["image_id"]] = annotation
    return by_image


def load_image_pairs(
    gt_json: str | os.PathLike, gt_dir: str | os.PathLike, pred_json: str | os.PathLike, pred_dir: str | os.PathLike
) -> tuple[list[dict], list[_ImagePair]]:
    """The GT categories and the GT/prediction pairs in GT order, with the JSON-level checks."""
    gt_data = load_panoptic_json(gt_json, "gt", nonempty=True)
    pred_data = load_panoptic_json(pred_json, "pred")
    gt_images = {image["id"]: image for image in gt_data["images"]}  # all well-formed: the load checked them
    categories = gt_data.get("categories")
    if not isinstance(categories, list) or not categories:
        raise DataError(gt_json, "no 'categories' list")
    gt_by_image = _annotations_by_image(gt_data, gt_json)
    pred_by_image = _annotations_by_image(pred_data, pred_json)
    unknown = [image_id for image_id in pred_by_image if image_id not in gt_by_image]
    if unknown:
        raise DataError(pred_json, f"predictions for images absent from the ground truth {gt_json}: {unknown[:5]}")
    missing = [image_id for image_id in gt_by_image if image_id not in pred_by_image]
    if missing:
        raise DataError(pred_json, f"no prediction for {len(missing)} ground-truth images, e.g. {missing[:5]}")
    pairs = [
        _ImagePair(
            image_id,
            os.path.join(gt_dir, gt["file_name"]),
            gt["segments_info"],
            os.path.join(pred_dir, pred_by_image[image_id]["file_name"]),
            pred_by_image[image_id]["segments_info"],
            str(gt_json),
            str(pred_json),
            gt_images.get(image_id),
        )
        for image_id, gt in gt_by_image.items()
    ]
    return categories, pairs


def _evaluate_pairs(categories: list[dict], pairs: Sequence[_ImagePair]) -> PQAccumulator:
    accumulator = PQAccumulator(categories)
    for pair in pairs:
        gt_rgb = read_panoptic_rgb(pair.gt_png, size_check_of(pair.gt_image))
        pred_rgb = read_panoptic_rgb(pair.pred_png, _size_of_ground_truth(gt_rgb.shape[:2], pair.image_id))
        try:
            accumulator._add(gt_rgb, pair.gt_segments, pred_rgb, pair.pred_segments)
        except _ImageError as err:
            if err.part == "png":
                path = pair.gt_png if err.side == "gt" else pair.pred_png
            else:
                path = pair.gt_json if err.side == "gt" else pair.pred_json
            raise DataError(path, f"image {pair.image_id}: {err.problem}") from None
    return accumulator


def _size_of_ground_truth(gt_shape: tuple[int, int], image_id: Any):
    """The ``size_check`` of a prediction PNG: the header's size must be the ground truth PNG's."""
    def check(path: str | os.PathLike, size: tuple[int, int]) -> DataError | None:
        size, expected = tuple(size), tuple(gt_shape)
        if size == expected:
            return None
        return DataError(path, f"image {image_id}: size {size} differs from the ground truth's {expected}")
    return check


def _evaluate_chunk(task: tuple[list[dict], list[_ImagePair]]) -> PQAccumulator:
    return _evaluate_pairs(*task)


def _chunks(pairs: Sequence[_ImagePair], size: int) -> Iterator[list[_ImagePair]]:
    for start in range(0, len(pairs), size):
        yield list(pairs[start : start + size])


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork is fastest, but unsafe once torch (and its threads) is loaded: then spawn."""
    if sys.platform.startswith("linux") and "torch" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def pq_compute(
    gt_json: str | os.PathLike,
    gt_dir: str | os.PathLike,
    pred_json: str | os.PathLike,
    pred_dir: str | os.PathLike,
    workers: int = 1,
    *,
    progress: bool = True,
) -> dict:
    """PQ / SQ / RQ of a COCO-panoptic prediction against its ground truth (see ``PQAccumulator.summary``)."""
    categories, pairs = load_image_pairs(gt_json, gt_dir, pred_json, pred_dir)
    total = PQAccumulator(categories)
    chunks = _chunks(pairs, CHUNK_SIZE)
    bar = tqdm(total=len(pairs), desc="PQ", unit="img", disable=not progress, file=sys.stderr)
    with bar:
        if workers <= 1 or len(pairs) <= CHUNK_SIZE:
            results: Iterable[PQAccumulator] = (_evaluate_pairs(categories, chunk) for chunk in chunks)
            _sum_in_order(total, results, bar)
        else:
            with _pool_context().Pool(processes=workers) as pool:
                results = pool.imap(_evaluate_chunk, ((categories, chunk) for chunk in chunks))
                _sum_in_order(total, results, bar)
    return total.summary()


def _sum_in_order(total: PQAccumulator, results: Iterable[PQAccumulator], bar: tqdm) -> None:
    for chunk in results:
        total.merge(chunk)
        bar.update(chunk.images)
