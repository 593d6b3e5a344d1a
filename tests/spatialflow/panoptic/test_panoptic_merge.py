"""The merge heuristic on hand-built masks: one test per rule, expected maps written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialflow.data.categories import IGNORE_INDEX, CategoryMap
from spatialflow.panoptic.merge import MERGE_PRESETS, MergeConfig, PanopticResult, merge, to_coco_segments

# A 4x6 image, 2 stuff classes (0, 1), 'other' = 2.
OTHER = 2
NO_STUFF_LIMIT = MergeConfig(score_threshold=0.5, overlap_threshold=0.5, stuff_area_limit=1)


def _mask(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows])


def _stuff(value: int, shape=(4, 6)) -> np.ndarray:
    return np.full(shape, value, dtype=np.int64)


def test_presets_are_the_papers():
    assert MERGE_PRESETS["coco"] == MergeConfig(0.37, 0.37, 4900)
    assert MERGE_PRESETS["cityscapes"] == MergeConfig(0.37, 0.25, 2048)
    assert MergeConfig().box_fill is False


def test_score_threshold_drops_low_scores_and_keeps_equal():
    masks = np.stack([_mask(["##....", "##....", "......", "......"]),
                      _mask(["....##", "....##", "......", "......"])])
    # scores 0.5 (== threshold: kept) and 0.49 (< threshold: dropped)
    result = merge(masks, [0.5, 0.49], [3, 4], _stuff(OTHER), other_index=OTHER, config=NO_STUFF_LIMIT)
    assert [(s["id"], s["isthing"], s["label"], s["score"], s["area"]) for s in result.segments] == [
        (1, True, 3, 0.5, 4)]
    assert result.panoptic_ids.dtype == np.int32
    assert result.panoptic_ids[:2, :2].tolist() == [[1, 1], [1, 1]]
    assert int((result.panoptic_ids == 0).sum()) == 24 - 4


def test_higher_score_placed_first_and_partial_overlap_keeps_free_pixels_only():
    a = _mask(["###...", "###...", "......", "......"])  # 6 px, score 0.6
    b = _mask(["..###.", "..###.", "......", "......"])  # 6 px, score 0.9; overlaps a in 2 px
    result = merge(np.stack([a, b]), [0.6, 0.9], [0, 1], _stuff(OTHER), other_index=OTHER, config=NO_STUFF_LIMIT)
    # b (0.9) is placed first -> id 1 with all 6 px; a then has 2/6 = 0.33 taken <= 0.5: keeps its 4 free px.
    assert result.panoptic_ids.tolist()[:2] == [[2, 2, 1, 1, 1, 0], [2, 2, 1, 1, 1, 0]]
    assert [(s["label"], s["area"]) for s in result.segments] == [(1, 6), (0, 4)]


def test_overlap_above_threshold_skips_the_instance():
    a = _mask(["####..", "......", "......", "......"])  # 4 px
    b = _mask(["###...", "......", "......", "......"])  # 3 px, all under a
    c = _mask(["...###", "......", "......", "......"])  # 3 px, 1 under a: 1/3 = 0.33 <= 0.5 kept
    result = merge(np.stack([a, b, c]), [0.9, 0.8, 0.7], [0, 0, 0], _stuff(OTHER), other_index=OTHER,
                   config=NO_STUFF_LIMIT)
    # b: 3/3 = 1.0 > 0.5 -> skipped; c takes its 2 free px.
    assert result.panoptic_ids[0].tolist() == [1, 1, 1, 1, 2, 2]
    assert [s["area"] for s in result.segments] == [4, 2]


def test_overlap_exactly_at_threshold_is_kept():
    a = _mask(["##....", "......", "......", "......"])
    b = _mask([".##...", "......", "......", "......"])  # 1 of 2 px taken: 0.5, not > 0.5 -> kept
    result = merge(np.stack([a, b]), [0.9, 0.8], [0, 1], _stuff(OTHER), other_index=OTHER, config=NO_STUFF_LIMIT)
    assert result.panoptic_ids[0].tolist() == [1, 1, 2, 0, 0, 0]


def test_empty_mask_is_skipped_and_takes_no_id():
    empty = np.zeros((4, 6), dtype=bool)
    full = _mask(["#.....", "......", "......", "......"])
    result = merge(np.stack([empty, full]), [0.99, 0.6], [0, 1], _stuff(OTHER), other_index=OTHER,
                   config=NO_STUFF_LIMIT)
    assert [(s["id"], s["label"]) for s in result.segments] == [(1, 1)]


def test_stuff_area_limit_other_and_void_and_things_win():
    # stuff map: rows 0-1 class 0 (12 px), row 2 class 1 (6 px), row 3: 'other' x3 and void x3.
    stuff = np.array([[0] * 6, [0] * 6, [1] * 6, [OTHER] * 3 + [IGNORE_INDEX] * 3])
    thing = _mask(["##....", "......", "......", "......"])  # 2 px on top of class 0
    config = MergeConfig(score_threshold=0.5, overlap_threshold=0.5, stuff_area_limit=7)
    result = merge(thing[None], [0.9], [5], stuff, other_index=OTHER, config=config)
    # thing id 1 (2 px); class 0 keeps 12 - 2 = 10 free px >= 7 -> id 2; class 1 has 6 < 7 -> void;
    # 'other' and 255 are never segments.
    assert result.panoptic_ids.tolist() == [
        [1, 1, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2], [0] * 6, [0] * 6]
    assert [(s["isthing"], s["label"], s["score"], s["area"]) for s in result.segments] == [
        (True, 5, 0.9, 2), (False, 0, 1.0, 10)]


def test_stuff_area_limit_is_inclusive():
    stuff = np.array([[0] * 6, [0] * 6, [1] * 6, [1] * 6])  # 12 px each
    config = MergeConfig(stuff_area_limit=12)
    result = merge(np.zeros((0, 4, 6), bool), [], [], stuff, other_index=OTHER, config=config)
    assert [(s["label"], s["area"]) for s in result.segments] == [(0, 12), (1, 12)]


def test_box_fill_off_by_default_and_on_fills_free_box_pixels():
    mask = _mask(["......", ".##...", ".#....", "......"])  # 3 px inside box x 1..3, y 1..3 (4 px)
    boxes = np.array([[1.0, 1.0, 3.9, 3.0]])  # int() truncation -> columns 1..2, rows 1..2 (2x2 = 4 px)
    off = merge(mask[None], [0.9], [0], _stuff(OTHER), other_index=OTHER, config=NO_STUFF_LIMIT, boxes=boxes)
    assert off.panoptic_ids[2, 2] == 0
    on_config = MergeConfig(0.5, 0.5, 1, box_fill=True, box_fill_ratio=0.25)
    on = merge(mask[None], [0.9], [0], _stuff(OTHER), other_index=OTHER, config=on_config, boxes=boxes)
    # free pixels in the box: 1 of 4 = 0.25 >= 0.25 -> pixel (2, 2) joins segment 1: area 4.
    assert on.panoptic_ids[1:3, 1:3].tolist() == [[1, 1], [1, 1]]
    assert [(s["id"], s["area"]) for s in on.segments] == [(1, 4)]
    strict = MergeConfig(0.5, 0.5, 1, box_fill=True, box_fill_ratio=0.5)  # 0.25 < 0.5 -> no fill
    assert merge(mask[None], [0.9], [0], _stuff(OTHER), other_index=OTHER, config=strict,
                 boxes=boxes).segments[0]["area"] == 3


def test_box_fill_runs_after_stuff_and_can_revive_a_skipped_instance():
    # Instance b is skipped (fully under a), but its box is free enough after stuff: it becomes a segment.
    a = _mask(["##....", "##....", "......", "......"])
    b = _mask(["#.....", "......", "......", "......"])
    stuff = np.full((4, 6), OTHER)
    config = MergeConfig(0.5, 0.5, 1, box_fill=True, box_fill_ratio=0.5)
    boxes = np.array([[0, 0, 2, 2], [0, 0, 4, 4]], dtype=float)  # a: 4 px all taken; b: 16 px, 12 free
    result = merge(np.stack([a, b]), [0.9, 0.8], [0, 1], stuff, other_index=OTHER, config=config, boxes=boxes)
    assert [(s["id"], s["label"], s["area"]) for s in result.segments] == [(1, 0, 4), (2, 1, 12)]


def test_torch_inputs_and_coco_segments():
    categories = CategoryMap.from_categories([
        {"id": 7, "isthing": 1}, {"id": 9, "isthing": 1}, {"id": 100, "isthing": 0}, {"id": 200, "isthing": 0}])
    masks = torch.zeros(1, 4, 6, dtype=torch.bool)
    masks[0, 0, 0] = True
    result = merge(masks, torch.tensor([0.9]), torch.tensor([1]), torch.full((4, 6), 1), other_index=2,
                   config=NO_STUFF_LIMIT)
    assert isinstance(result, PanopticResult)
    # thing label 1 -> category 9; stuff label 1 -> category 200.
    assert to_coco_segments(result, categories) == [
        {"id": 1, "category_id": 9, "iscrowd": 0}, {"id": 2, "category_id": 200, "iscrowd": 0}]


def test_bad_inputs_are_reported():
    with pytest.raises(ValueError, match="differ in number"):
        merge(np.zeros((2, 4, 6), bool), [0.9], [0], _stuff(OTHER), other_index=OTHER)
    with pytest.raises(ValueError, match="boxes"):
        merge(np.zeros((1, 4, 6), bool), [0.9], [0], _stuff(OTHER), other_index=OTHER,
              config=MergeConfig(box_fill=True))
    with pytest.raises(ValueError, match="outside"):
        merge(np.zeros((0, 4, 6), bool), [], [], _stuff(7), other_index=OTHER)
