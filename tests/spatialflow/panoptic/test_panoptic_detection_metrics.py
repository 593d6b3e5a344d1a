"""Things-only box and mask AP through pycocotools, on hand-built detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialflow.data.categories import CategoryMap
from spatialflow.panoptic.detection_metrics import detection_metrics

CATEGORIES = CategoryMap.from_categories(
    [{"id": 3, "isthing": 1}, {"id": 8, "isthing": 1}, {"id": 100, "isthing": 0}])


def _box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((64, 64), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _target() -> dict:
    return {"image_id": 1, "height": 64, "width": 64, "boxes": np.array([[10, 10, 30, 30]], float),
            "labels": np.array([1]), "masks": _box_mask(10, 10, 30, 30)[None]}


def test_perfect_detection_is_100_box_and_mask():
    detection = {"image_id": 1, "boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1]), "masks": torch.from_numpy(_box_mask(10, 10, 30, 30))[None]}
    metrics = detection_metrics([detection], [_target()], CATEGORIES)
    assert metrics["bbox_AP"] == pytest.approx(100) and metrics["segm_AP"] == pytest.approx(100)
    # The 20x20 = 400 px object is 'small' (< 32**2): no medium/large GT -> pycocotools' -1 marker.
    assert metrics["segm_APs"] == pytest.approx(100) and metrics["segm_APm"] == -1.0


def test_a_higher_scored_false_positive_halves_ap():
    # Ranked: FP (0.95, elsewhere) then TP (0.9): precision is 1/2 at every recall level -> AP = 50.
    detection = {"image_id": 1, "boxes": np.array([[40, 40, 60, 60], [10, 10, 30, 30]], float),
                 "scores": np.array([0.95, 0.9]), "labels": np.array([1, 1]),
                 "masks": np.stack([_box_mask(40, 40, 60, 60), _box_mask(10, 10, 30, 30)])}
    metrics = detection_metrics([detection], [_target()], CATEGORIES)
    assert metrics["bbox_AP"] == pytest.approx(50) and metrics["segm_AP"] == pytest.approx(50)
    assert metrics["bbox_AP50"] == pytest.approx(50)


def test_wrong_class_and_no_detections_give_zero_and_boxes_only_without_masks():
    wrong = {"image_id": 1, "boxes": np.array([[10, 10, 30, 30]], float), "scores": np.array([0.9]),
             "labels": np.array([0])}  # category 3 instead of 8; no masks -> box AP only
    target = {k: v for k, v in _target().items() if k != "masks"}
    metrics = detection_metrics([wrong], [target], CATEGORIES)
    assert metrics["bbox_AP"] == 0.0 and not any(k.startswith("segm") for k in metrics)
    empty = {"image_id": 1, "boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}
    assert detection_metrics([empty], [target], CATEGORIES)["bbox_AP"] == 0.0
