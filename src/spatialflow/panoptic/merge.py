"""The panoptic merge: instance masks + a stuff label map -> one non-overlapping panoptic id map.

The heuristic of Panoptic FPN used by SpatialFlow (paper section 3.3 and supplement):

1. drop instances whose score is below ``score_threshold``; visit the rest by descending score;
2. skip an empty mask; skip an instance when more than ``overlap_threshold`` of its mask is already
   taken; otherwise it takes the still-free pixels of its mask (things win over stuff);
3. each stuff class other than 'other' takes its free pixels if there are at least
   ``stuff_area_limit`` of them;
4. optional box fill (the reference code's extra step, off by default): after stuff, every kept-score
   instance whose box is still at least ``box_fill_ratio`` free takes those free box pixels;
5. everything left is void (id 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spatialflow.data.categories import IGNORE_INDEX, CategoryMap


@dataclass(frozen=True)
class MergeConfig:
    """Thresholds of the merge heuristic (defaults: the paper's COCO values)."""

    score_threshold: float = 0.37
    overlap_threshold: float = 0.37
    stuff_area_limit: int = 4900
    box_fill: bool = False
    box_fill_ratio: float = 0.5


MERGE_PRESETS: dict[str, MergeConfig] = {
    "coco": MergeConfig(score_threshold=0.37, overlap_threshold=0.37, stuff_area_limit=4900),
    "cityscapes": MergeConfig(score_threshold=0.37, overlap_threshold=0.25, stuff_area_limit=2048),
}


@dataclass
class PanopticResult:
    """A merged panoptic prediction for one image.

    ``panoptic_ids``: (H, W) int32 segment ids, 0 = void. ``segments``: one dict per segment,
    ``{"id", "isthing", "label", "score", "area"}``; ``label`` is the contiguous index within things
    or within stuff, ``score`` is the detection score for things and 1.0 for stuff.
    """

    panoptic_ids: np.ndarray
    segments: list[dict]


def _numpy(array: Any) -> np.ndarray:
    """A numpy view of a numpy array or a (possibly CUDA) torch tensor."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def merge(
    masks: Any,
    scores: Any,
    labels: Any,
    stuff_map: Any,
    *,
    other_index: int,
    config: MergeConfig = MergeConfig(),
    boxes: Any = None,
) -> PanopticResult:
    """Merge instances and stuff into a panoptic id map with the heuristic above.

    ``masks``: (N, H, W) bool; ``scores``: (N,); ``labels``: (N,) contiguous thing indices;
    ``stuff_map``: (H, W) stuff indices 0..S-1, ``other_index`` (= S) for 'other', 255 for void;
    ``boxes``: (N, 4) xyxy in pixels, needed only when ``config.box_fill`` is on.
    Numpy arrays or torch tensors.
    """
    stuff_map = _numpy(stuff_map)
    if stuff_map.ndim != 2:
        raise ValueError(f"stuff_map must be (H, W), got shape {stuff_map.shape}")
    height, width = stuff_map.shape
    masks = _numpy(masks).astype(bool, copy=False).reshape(-1, height, width)
    scores = _numpy(scores).astype(np.float64, copy=False).reshape(-1)
    labels = _numpy(labels).astype(np.int64, copy=False).reshape(-1)
    if not len(masks) == len(scores) == len(labels):
        raise ValueError(f"{len(masks)} masks, {len(scores)} scores and {len(labels)} labels differ in number")
    if config.box_fill:
        if boxes is None:
            raise ValueError("config.box_fill needs the detection boxes")
        boxes = _numpy(boxes).astype(np.float64, copy=False).reshape(-1, 4)
        if len(boxes) != len(masks):
            raise ValueError(f"{len(boxes)} boxes for {len(masks)} masks")

    panoptic_ids = np.zeros((height, width), dtype=np.int32)
    segments: list[dict] = []

    def new_segment(isthing: bool, label: int, score: float) -> int:
        segments.append({"id": len(segments) + 1, "isthing": isthing, "label": int(label), "score": float(score)})
        return len(segments)

    # Steps 1-2: instances by descending score (stable: equal scores keep their input order).
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= config.score_threshold]
    instance_segment: dict[int, int] = {}
    for i in order:
        mask = masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        free = mask & (panoptic_ids == 0)
        free_area = int(free.sum())
        if free_area == 0 or (area - free_area) / area > config.overlap_threshold:
            continue
        segment_id = new_segment(True, labels[i], scores[i])
        instance_segment[int(i)] = segment_id
        panoptic_ids[free] = segment_id

    # Step 3: stuff classes, 'other' and void excluded, on the pixels left free by things.
    free_stuff = np.where(panoptic_ids == 0, stuff_map, IGNORE_INDEX)
    for stuff_class in np.unique(free_stuff):
        if stuff_class in (other_index, IGNORE_INDEX):
            continue
        if not 0 <= stuff_class < other_index:
            raise ValueError(f"stuff_map holds {stuff_class}, outside 0..{other_index} and {IGNORE_INDEX}")
        region = free_stuff == stuff_class
        if int(region.sum()) < config.stuff_area_limit:
            continue
        panoptic_ids[region] = new_segment(False, stuff_class, 1.0)

    # Step 4 (switch): box fill, as in the reference code (boxes truncated to integer pixels).
    if config.box_fill:
        for i in order:
            x0, y0, x1, y1 = (int(v) for v in boxes[i])
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            window = panoptic_ids[y0:y1, x0:x1]  # a view: writes go to panoptic_ids
            free = window == 0
            if free.sum() / free.size < config.box_fill_ratio:
                continue
            segment_id = instance_segment.get(int(i)) or new_segment(True, labels[i], scores[i])
            instance_segment[int(i)] = segment_id
            window[free] = segment_id

    areas = np.bincount(panoptic_ids.reshape(-1), minlength=len(segments) + 1)
    for segment in segments:
        segment["area"] = int(areas[segment["id"]])
    return PanopticResult(panoptic_ids=panoptic_ids, segments=segments)


def to_coco_segments(result: PanopticResult, categories: CategoryMap) -> list[dict]:
    """COCO-panoptic ``segments_info`` entries (without area/bbox) for ``PanopticWriter.add``."""
    coco = []
    for segment in result.segments:
        if segment["isthing"]:
            category_id = categories.thing_category_id(segment["label"])
        else:
            category_id = categories.stuff_category_id(segment["label"])
        coco.append({"id": int(segment["id"]), "category_id": int(category_id), "iscrowd": 0})
    return coco
