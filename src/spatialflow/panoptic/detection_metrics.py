"""Things-only COCO detection metrics (box AP and mask AP) through pycocotools, reported beside PQ.

Inputs are per-image dicts with contiguous thing labels (the model's output / the dataset's targets):

- detections: ``{"image_id", "boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,), "masks" (N, H, W) bool}``
- ground truth: ``{"image_id", "height", "width", "boxes" (M, 4) xyxy, "labels" (M,), "masks" (M, H, W),
  "iscrowd" (M,) optional}``

``masks`` may be left out of both to get box AP only. Numpy arrays or torch tensors.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from spatialflow.data.categories import CategoryMap

#: COCOeval.stats, in order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _xywh(boxes: Any) -> np.ndarray:
    boxes = _numpy(boxes).astype(np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detection_metrics(detections: Sequence[dict], ground_truth: Sequence[dict],
                      categories: CategoryMap) -> dict[str, float]:
    """COCO AP of thing detections: ``{"bbox_AP", "bbox_AP50", ..., "segm_AP", ...}`` in percent.

    ``segm_*`` only when every image has masks on both sides. Images without GT instances still count
    (their detections are false positives).
    """
    with_masks = all("masks" in d for d in detections) and all("masks" in g for g in ground_truth)
    images, gt_annotations, results = [], [], []
    for target in ground_truth:
        images.append({"id": target["image_id"], "height": int(target["height"]), "width": int(target["width"])})
        labels = _numpy(target["labels"]).reshape(-1)
        boxes = _xywh(target["boxes"])
        crowd = _numpy(target.get("iscrowd", np.zeros(len(labels)))).reshape(-1)
        masks = _numpy(target["masks"]).astype(bool) if with_masks else None
        for k in range(len(labels)):
            annotation = {"id": len(gt_annotations) + 1, "image_id": target["image_id"],
                          "category_id": categories.thing_category_id(int(labels[k])),
                          "bbox": boxes[k].tolist(), "iscrowd": int(crowd[k])}
            if masks is not None:
                annotation["segmentation"] = _rle(masks[k])
                annotation["area"] = float(masks[k].sum())
            else:
                annotation["area"] = float(boxes[k, 2] * boxes[k, 3])
            gt_annotations.append(annotation)
    for detection in detections:
        labels = _numpy(detection["labels"]).reshape(-1)
        scores = _numpy(detection["scores"]).reshape(-1)
        boxes = _xywh(detection["boxes"])
        masks = _numpy(detection["masks"]).astype(bool) if with_masks else None
        for k in range(len(labels)):
            result = {"image_id": detection["image_id"], "category_id": categories.thing_category_id(int(labels[k])),
                      "bbox": boxes[k].tolist(), "score": float(scores[k])}
            if masks is not None:
                result["segmentation"] = _rle(masks[k])
            results.append(result)

    coco_gt = COCO()
    coco_gt.dataset = {"images": images, "annotations": gt_annotations,
                       "categories": [{"id": cid} for cid in categories.thing_ids]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
    metrics: dict[str, float] = {}
    for iou_type in ("bbox", "segm") if with_masks else ("bbox",):
        if not results:  # pycocotools cannot load an empty result list: AP is 0
            metrics.update({f"{iou_type}_{name}": 0.0 for name in STAT_NAMES})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            # pycocotools takes a result's area from its bbox when it has one: give each type only its own.
            dropped = "bbox" if iou_type == "segm" else "segmentation"
            coco_dt = coco_gt.loadRes([{k: v for k, v in r.items() if k != dropped} for r in results])
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        # COCOeval reports -1 where a statistic has no GT (e.g. no small objects); keep that marker.
        metrics.update({f"{iou_type}_{name}": (100 * float(v) if v >= 0 else -1.0)
                        for name, v in zip(STAT_NAMES, evaluator.stats)})
    return metrics
