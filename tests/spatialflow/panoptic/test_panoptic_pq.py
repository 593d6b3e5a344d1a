"""PQ on hand-computed cases, on the real COCO fixture, and on the pair with the official evaluator's answer.

Hand cases use 1-row images; categories: thing A (id 1), thing B (id 2), stuff S (id 10).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.paths import FIXTURES
from spatialflow.errors import DataError
from spatialflow.data.panoptic_ids import id2rgb, read_segment_ids
from spatialflow.panoptic.pq import PQAccumulator, pq_compute

CATEGORIES = [
    {"id": 1, "name": "A", "isthing": 1},
    {"id": 2, "name": "B", "isthing": 1},
    {"id": 10, "name": "S", "isthing": 0},
]


def _row(*values: int) -> np.ndarray:
    return np.array([values], dtype=np.int64)


def _seg(segment_id: int, category_id: int, iscrowd: int = 0) -> dict:
    return {"id": segment_id, "category_id": category_id, "iscrowd": iscrowd}


def _pq(*images) -> dict:
    accumulator = PQAccumulator(CATEGORIES)
    for gt_ids, gt_segments, pred_ids, pred_segments in images:
        accumulator.add(gt_ids, gt_segments, pred_ids, pred_segments)
    return accumulator.summary()


def _triple(result: dict, group: str) -> tuple[float, float, float, int]:
    return tuple(pytest.approx(result[group][k], abs=1e-12) if k != "n" else result[group][k]
                 for k in ("pq", "sq", "rq", "n"))


# ----------------------------------------------------------------------------------- hand-computed cases


def test_perfect_prediction_is_100():
    # Segment ids differ between GT and prediction: only the pixels and categories matter.
    gt = _row(5, 5, 5, 9, 9, 9)
    pred = _row(7, 7, 7, 3, 3, 3)
    result = _pq((gt, [_seg(5, 1), _seg(9, 10)], pred, [_seg(7, 1), _seg(3, 10)]))
    assert _triple(result, "All") == (100, 100, 100, 2)
    assert _triple(result, "Things") == (100, 100, 100, 1)
    assert _triple(result, "Stuff") == (100, 100, 100, 1)


def test_off_by_one_shift():
    # GT: A on columns 0-3, S on 4-9. Prediction shifted right by one: S on 0 and 5-9, A on 1-4.
    gt = _row(1, 1, 1, 1, 2, 2, 2, 2, 2, 2)
    pred = _row(4, 3, 3, 3, 3, 4, 4, 4, 4, 4)
    result = _pq((gt, [_seg(1, 1), _seg(2, 10)], pred, [_seg(3, 1), _seg(4, 10)]))
    # A: |inter| = 3 (cols 1-3), union = 4 + 4 - 3 = 5 -> IoU 3/5 = 0.6 > 0.5: TP.
    # S: |inter| = 5 (cols 5-9), union = 6 + 6 - 5 = 7 -> IoU 5/7: TP.
    assert _triple(result, "Things") == (60, 60, 100, 1)
    assert _triple(result, "Stuff") == (100 * 5 / 7, 100 * 5 / 7, 100, 1)
    assert _triple(result, "All") == (100 * (0.6 + 5 / 7) / 2, 100 * (0.6 + 5 / 7) / 2, 100, 2)


def test_iou_exactly_one_half_is_not_a_match():
    # GT A on cols 0-3 (4 px); prediction A on cols 0-1 (2 px): IoU = 2 / (2 + 4 - 2) = 0.5, not > 0.5.
    gt = _row(1, 1, 1, 1, 0, 0)
    pred = _row(1, 1, 0, 0, 0, 0)
    result = _pq((gt, [_seg(1, 1)], pred, [_seg(1, 1)]))
    # -> one FN and one FP (the prediction has no void under it): PQ = RQ = 0 / (0 + 1/2 + 1/2) = 0.
    assert result["per_class"]["1"] == {"name": "A", "isthing": True, "pq": 0.0, "sq": 0.0, "rq": 0.0,
                                            "tp": 0, "fp": 1, "fn": 1}
    assert _triple(result, "All") == (0, 0, 0, 1)
    # One more pixel makes it a match: IoU = 3 / (3 + 4 - 3) = 0.75.
    result = _pq((gt, [_seg(1, 1)], _row(1, 1, 1, 0, 0, 0), [_seg(1, 1)]))
    assert _triple(result, "All") == (75, 75, 100, 1)


def test_void_heavy_prediction():
    # GT: A on cols 0-3, void on 4-9.
    gt = _row(1, 1, 1, 1, 0, 0, 0, 0, 0, 0)
    # Prediction: A on cols 0-5 (2 of its 6 px on void), B on 6-9 (all 4 px on void).
    pred = _row(3, 3, 3, 3, 3, 3, 4, 4, 4, 4)
    result = _pq((gt, [_seg(1, 1)], pred, [_seg(3, 1), _seg(4, 2)]))
    # A: void is removed from the prediction: IoU = 4 / (6 + 4 - 4 - 2) = 1. B: 4/4 void > 1/2 -> not a FP,
    # and B occurs nowhere else: it is not averaged (N = 1).
    assert _triple(result, "All") == (100, 100, 100, 1)
    assert result["per_class"]["2"]["fp"] == 0


def test_prediction_exactly_half_void_is_a_false_positive():
    gt = _row(1, 1, 0, 0)  # A on cols 0-1, void on 2-3
    pred = _row(3, 4, 4, 0)  # A on col 0; B on cols 1-2: 1 px on A, 1 px on void -> 1/2, not > 1/2: FP
    result = _pq((gt, [_seg(1, 1)], pred, [_seg(3, 1), _seg(4, 2)]))
    # A: IoU = 1 / (1 + 2 - 1 - 0) = 1/2 -> not a match: FN, and the A prediction (no void) is a FP.
    assert (result["per_class"]["2"]["fp"], result["per_class"]["1"]["fp"], result["per_class"]["1"]["fn"]) == (1, 1, 1)
    assert _triple(result, "All") == (0, 0, 0, 2)


def test_crowd_gt_of_the_same_class():
    # GT: crowd A on cols 0-5, an A instance on cols 6-7.
    gt = _row(9, 9, 9, 9, 9, 9, 1, 1)
    # Prediction: A on cols 0-4 (inside the crowd), A on 6-7.
    pred = _row(5, 5, 5, 5, 5, 0, 6, 6)
    result = _pq((gt, [_seg(9, 1, iscrowd=1), _seg(1, 1)], pred, [_seg(5, 1), _seg(6, 1)]))
    # The crowd never matches and is never a FN; the prediction inside it (5/5 crowd) is not a FP.
    assert result["per_class"]["1"]["tp"] == 1 and result["per_class"]["1"]["fp"] == 0
    assert result["per_class"]["1"]["fn"] == 0
    assert _triple(result, "All") == (100, 100, 100, 1)


def test_crowd_gt_of_another_class_and_a_category_absent_from_gt():
    gt = _row(9, 9, 9, 9, 9, 9, 1, 1)
    # Same as above, but the prediction inside the A crowd is B, a category absent from the GT.
    pred = _row(5, 5, 5, 5, 5, 0, 6, 6)
    result = _pq((gt, [_seg(9, 1, iscrowd=1), _seg(1, 1)], pred, [_seg(5, 2), _seg(6, 1)]))
    # B: another class's crowd does not excuse it -> FP; B counts in the average with PQ 0 (N = 2).
    assert result["per_class"]["2"] == {"name": "B", "isthing": True, "pq": 0.0, "sq": 0.0, "rq": 0.0,
                                            "tp": 0, "fp": 1, "fn": 0}
    # All = Things = mean(A: 100, B: 0) = 50 for PQ, SQ and RQ.
    assert _triple(result, "Things") == (50, 50, 50, 2)
    assert _triple(result, "All") == (50, 50, 50, 2)


def test_images_with_no_segments():
    empty = (_row(0, 0, 0), [], _row(0, 0, 0), [])
    # Only empty images: nothing occurs, every group has N = 0 and zeros (panopticapi divides by zero).
    result = _pq(empty, empty)
    assert [_triple(result, g) for g in ("All", "Things", "Stuff")] == [(0, 0, 0, 0)] * 3
    # With an empty image beside a perfect one, the result is the perfect one's.
    perfect = (_row(1, 1, 2), [_seg(1, 1), _seg(2, 10)], _row(1, 1, 2), [_seg(1, 1), _seg(2, 10)])
    assert _triple(_pq(empty, perfect), "All") == (100, 100, 100, 2)


def test_things_only_and_stuff_only_sets():
    things_only = (_row(1, 1, 2, 2), [_seg(1, 1), _seg(2, 2)], _row(1, 1, 1, 2), [_seg(1, 1), _seg(2, 2)])
    # A: IoU = 2/3; B: IoU = 1/2 -> not a match: FN + FP (no void) -> PQ_B = 0, RQ_B = 0.
    result = _pq(things_only)
    assert _triple(result, "Things") == (100 * (2 / 3) / 2, 100 * (2 / 3) / 2, 50, 2)
    assert _triple(result, "Stuff") == (0, 0, 0, 0)
    assert result["All"] == result["Things"]
    stuff_only = (_row(1, 1, 1), [_seg(1, 10)], _row(4, 4, 0), [_seg(4, 10)])
    # S: IoU = 2 / (2 + 3 - 2 - 0) = 2/3.
    result = _pq(stuff_only)
    assert _triple(result, "Stuff") == (100 * 2 / 3, 100 * 2 / 3, 100, 1)
    assert _triple(result, "Things") == (0, 0, 0, 0)


def test_merge_of_accumulators_equals_one_pass():
    a = (_row(1, 1, 2), [_seg(1, 1), _seg(2, 10)], _row(1, 2, 2), [_seg(1, 1), _seg(2, 10)])
    b = (_row(1, 1, 1), [_seg(1, 2)], _row(3, 3, 0), [_seg(3, 2)])
    first, second = PQAccumulator(CATEGORIES), PQAccumulator(CATEGORIES)
    first.add(*a)
    second.add(*b)
    first.merge(second)
    assert first.summary() == _pq(a, b)


@pytest.mark.parametrize(
    ("gt_ids", "gt_segments", "pred_ids", "pred_segments", "message"),
    [
        (_row(1, 1), [_seg(1, 1)], _row(1, 7), [_seg(1, 1)], r"prediction ids.*7 are in the PNG but not in the JSON"),
        (_row(1, 1), [_seg(1, 1)], _row(1, 1), [_seg(1, 1), _seg(4, 1)], r"4\] are in the JSON but not in the PNG"),
        (_row(1, 1), [_seg(1, 1)], _row(1, 1), [_seg(1, 99)], "unknown category_id 99"),
        (_row(1, 1), [_seg(1, 1)], _row(1, 1), [_seg(1, 1), _seg(1, 2)], r"duplicate segment ids \[1\]"),
        (_row(1, 1), [_seg(1, 1)], _row(1, 1, 1), [_seg(1, 1)], "differs from the ground truth"),
        (_row(1, 5), [_seg(1, 1)], _row(1, 1), [_seg(1, 1)], r"ground truth ids.*5 are in the PNG"),
    ],
)
def test_inconsistent_input_is_a_clear_error(gt_ids, gt_segments, pred_ids, pred_segments, message):
    with pytest.raises(DataError, match=message):
        PQAccumulator(CATEGORIES).add(gt_ids, gt_segments, pred_ids, pred_segments)


# ------------------------------------------------------------------------------------------ real data


def test_official_evaluator_numbers_on_the_known_pair():
    pair = FIXTURES / "panoptic_gt_pred_pair"
    result = pq_compute(pair / "coco_gt.json", pair / "coco_gt", pair / "coco_pred.json", pair / "coco_pred",
                        progress=False)
    expected = json.loads((pair / "expected_pq.json").read_text())
    for group in ("All", "Things", "Stuff"):
        assert result[group]["n"] == expected[group]["n"]
        for key in ("pq", "sq", "rq"):
            assert result[group][key] == pytest.approx(expected[group][key], abs=1e-9), (group, key)


COCO = FIXTURES / "coco_panoptic_sample"
COCO_JSON = COCO / "panoptic_val2017_sample.json"


def test_coco_ground_truth_against_itself():
    result = pq_compute(COCO_JSON, COCO / "panoptic", COCO_JSON, COCO / "panoptic", progress=False)
    # Categories present: things person 1, sports ball 37, truck 8, horse 19; stuff 125, 184, 187, 193.
    assert _triple(result, "All") == (100, 100, 100, 8)
    assert _triple(result, "Things") == (100, 100, 100, 4)
    assert _triple(result, "Stuff") == (100, 100, 100, 4)
    occurring = {k for k, v in result["per_class"].items() if v["tp"] + v["fp"] + v["fn"]}
    assert occurring == {"1", "37", "8", "19", "125", "184", "187", "193"}


def _edited_coco_prediction(tmp_path: Path) -> tuple[Path, Path]:
    """The GT with three hand-described edits, written as a prediction."""
    data = json.loads(COCO_JSON.read_text())
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for annotation in data["annotations"]:
        ids = read_segment_ids(COCO / "panoptic" / annotation["file_name"]).astype(np.int64)
        segments = annotation["segments_info"]
        if annotation["image_id"] == 142238:
            # (1) drop person 4917453 (477 px): its pixels become void.
            ids[ids == 4917453] = 0
            segments = [s for s in segments if s["id"] != 4917453]
            # (2) shift the sports ball 16757838 (175 px) two columns right: its vacated pixels become void.
            ball = ids == 16757838
            ids[ball] = 0
            ids[:, 2:][ball[:, :-2]] = 16757838
        if annotation["image_id"] == 439180:
            # (3) relabel truck 4587520 (1680 px) as horse (category 19).
            segments = [dict(s, category_id=19) if s["id"] == 4587520 else s for s in segments]
        Image.fromarray(id2rgb(ids)).save(pred_dir / annotation["file_name"])
        annotation["segments_info"] = [{"id": s["id"], "category_id": s["category_id"]} for s in segments]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(data))
    return pred_json, pred_dir


def test_coco_prediction_with_hand_edits(tmp_path):
    pred_json, pred_dir = _edited_coco_prediction(tmp_path)
    # Facts of the fixture used below (counted once from the GT PNG): the ball shifted by 2 columns keeps
    # 142 of its 175 px and covers 33 px of the person crowd region 3153362 (no void, no other segment).
    gt = read_segment_ids(COCO / "panoptic" / "000000142238.png")
    ball = gt == 16757838
    shifted = np.zeros_like(ball)
    shifted[:, 2:] = ball[:, :-2]
    assert (int((ball & shifted).sum()), np.unique(gt[shifted & ~ball]).tolist()) == (142, [3153362])

    result = pq_compute(COCO_JSON, COCO / "panoptic", pred_json, pred_dir, progress=False)
    per_class = result["per_class"]
    # person: 26 non-crowd GT (13 per image), one dropped -> TP 25, FN 1 (the crowd region, 33 px smaller in
    # the prediction, is excused as before): PQ = RQ = 25 / 25.5, SQ = 1.
    assert (per_class["1"]["tp"], per_class["1"]["fp"], per_class["1"]["fn"]) == (25, 0, 1)
    # sports ball: IoU = 142 / (175 + 175 - 142) = 142 / 208 -> PQ = SQ = 142/208, RQ = 1.
    assert per_class["37"]["pq"] == pytest.approx(100 * 142 / 208, abs=1e-9)
    # truck: 2 GT, one relabelled -> TP 1, FN 1: PQ = RQ = 1 / 1.5. horse: 11 non-crowd GT (+1 crowd) all matched, plus
    # the relabelled truck as a FP (no void or horse crowd under it): PQ = RQ = 11 / 11.5.
    assert (per_class["8"]["tp"], per_class["8"]["fn"]) == (1, 1)
    assert (per_class["19"]["tp"], per_class["19"]["fp"], per_class["19"]["fn"]) == (11, 1, 0)
    things_pq = (25 / 25.5 + 142 / 208 + 1 / 1.5 + 11 / 11.5) / 4
    things_sq = (1 + 142 / 208 + 1 + 1) / 4
    things_rq = (25 / 25.5 + 1 + 1 / 1.5 + 11 / 11.5) / 4
    assert _triple(result, "Things") == (100 * things_pq, 100 * things_sq, 100 * things_rq, 4)
    assert _triple(result, "Stuff") == (100, 100, 100, 4)  # untouched
    assert _triple(result, "All") == (100 * (4 * things_pq + 4) / 8, 100 * (4 * things_sq + 4) / 8,
                                      100 * (4 * things_rq + 4) / 8, 8)


# ----------------------------------------------------------------------------------- file-level errors


def _copy_pair(tmp_path: Path) -> tuple[Path, Path, dict]:
    pair = FIXTURES / "panoptic_gt_pred_pair"
    pred_dir = tmp_path / "pred"
    shutil.copytree(pair / "coco_pred", pred_dir)
    return pair, pred_dir, json.loads((pair / "coco_pred.json").read_text())


def _evaluate_edited(tmp_path: Path, pred: dict, pred_dir: Path) -> None:
    pair = FIXTURES / "panoptic_gt_pred_pair"
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(pred))
    pq_compute(pair / "coco_gt.json", pair / "coco_gt", pred_json, pred_dir, progress=False)


def test_error_gt_image_without_prediction(tmp_path):
    _, pred_dir, pred = _copy_pair(tmp_path)
    pred["annotations"] = [a for a in pred["annotations"] if a["image_id"] != 2]
    with pytest.raises(DataError, match=r"pred\.json: no prediction for 1 ground-truth images, e\.g\. \[2\]"):
        _evaluate_edited(tmp_path, pred, pred_dir)


def test_error_prediction_for_unknown_image(tmp_path):
    _, pred_dir, pred = _copy_pair(tmp_path)
    pred["annotations"].append(dict(pred["annotations"][0], image_id=77))
    with pytest.raises(DataError, match=r"pred\.json: predictions for images absent from the ground truth.*\[77\]"):
        _evaluate_edited(tmp_path, pred, pred_dir)


def test_error_png_json_mismatch_names_the_png(tmp_path):
    _, pred_dir, pred = _copy_pair(tmp_path)
    pred["annotations"][1]["segments_info"] = []  # cat.png keeps its segment in the PNG
    with pytest.raises(DataError, match=r"cat\.png: image 2: segment ids 36493 are in the PNG but not in the JSON"):
        _evaluate_edited(tmp_path, pred, pred_dir)


def test_error_unknown_category_and_duplicate_ids_name_the_json(tmp_path):
    _, pred_dir, pred = _copy_pair(tmp_path)
    pred["annotations"][1]["segments_info"][0]["category_id"] = 999
    with pytest.raises(DataError, match=r"pred\.json: image 2: segment 36493 has unknown category_id 999"):
        _evaluate_edited(tmp_path, pred, pred_dir)
    _, pred_dir, pred = _copy_pair(tmp_path / "b")
    segments = pred["annotations"][1]["segments_info"]
    segments.append(dict(segments[0]))
    with pytest.raises(DataError, match=r"pred\.json: image 2: duplicate segment ids \[36493\]"):
        _evaluate_edited(tmp_path / "b", pred, pred_dir)


def test_error_missing_png(tmp_path):
    _, pred_dir, pred = _copy_pair(tmp_path)
    (pred_dir / "cat.png").unlink()
    with pytest.raises(DataError, match=r"cat\.png: panoptic PNG not found"):
        _evaluate_edited(tmp_path, pred, pred_dir)


# ---------------------------------------------------------------------------------------------------
# The pairing kernel and the one PNG-id decoder.


def test_pair_counts_by_hand_from_ids_and_from_colours():
    from spatialflow.panoptic.pq import _pair_counts

    # keys: slot 0 = unlisted ids, slot 1 = id 0, then listed ids. GT ids 7, 9; prediction id 300 (2 colour bytes).
    gt_keys = np.array([-1, 0, 7, 9])
    pred_keys = np.array([-1, 0, 300])
    gt = np.array([[7, 7, 7, 0, 9, 9, 5, 7]])  # 5 is not listed -> slot 0
    pred = np.array([[300, 300, 0, 0, 300, 300, 300, 0]])
    # pairs (gt slot, pred slot): (2,2) (2,2) (2,1) (1,1) (3,2) (3,2) (0,2) (2,1)
    expected = np.zeros((4, 3), dtype=np.int64)
    expected[2, 2], expected[2, 1], expected[1, 1], expected[3, 2], expected[0, 2] = 2, 2, 1, 2, 1
    counts = _pair_counts(gt.reshape(-1, 1), pred.reshape(-1, 1), gt_keys, pred_keys)
    assert counts.tolist() == expected.tolist()
    colours = _pair_counts(id2rgb(gt).reshape(-1, 3), id2rgb(pred).reshape(-1, 3), gt_keys, pred_keys)
    assert colours.tolist() == expected.tolist()


def test_pair_counts_single_pixel_and_one_long_run():
    from spatialflow.panoptic.pq import _pair_counts

    keys = np.array([-1, 0, 4])
    assert _pair_counts(np.array([[4]]), np.array([[0]]), keys, keys).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    run = np.full((1000, 1), 4)
    assert _pair_counts(run, run, keys, keys)[2, 2] == 1000


def test_one_png_decoder_for_rgb_and_rgba(tmp_path):
    from spatialflow.data.coco_panoptic import read_panoptic_png
    from spatialflow.data.panoptic_ids import read_panoptic_rgb, rgb2id

    ids = np.array([[0, 1, 256], [65536, 16777215, 70000]], dtype=np.int64)
    rgb = id2rgb(ids)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full(ids.shape, 128, np.uint8)])).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        assert read_panoptic_rgb(tmp_path / name).tolist() == rgb.tolist()  # alpha dropped
        assert read_segment_ids(tmp_path / name).tolist() == ids.tolist()
        assert read_panoptic_png(tmp_path / name).tolist() == rgb2id(rgb).tolist()


def test_prediction_png_of_another_size_is_refused_from_its_header(tmp_path):
    from helpers.png import png_header_only

    from spatialflow.data.panoptic_ids import MAX_PNG_PIXELS

    pair, pred_dir, pred = _copy_pair(tmp_path)
    height, width = Image.open(pair / "coco_gt" / "cat.png").size[::-1]
    png_header_only(pred_dir / "cat.png", 3000, 2000)  # undecodable pixels: only the header can be read
    with pytest.raises(DataError, match=rf"cat\.png: image 2: size \(3000, 2000\) differs from the ground truth's "
                                        rf"\({height}, {width}\)$"):
        _evaluate_edited(tmp_path, pred, pred_dir)
    png_header_only(pred_dir / "cat.png", 20_000, 20_000)
    assert 20_000**2 > MAX_PNG_PIXELS == 8192**2
    with pytest.raises(DataError, match=r"cat\.png: PNG header says 20000x20000 \(HxW\) pixels, more than the "
                                        r"67,108,864 a panoptic PNG may have \(refused before decoding\)$"):
        _evaluate_edited(tmp_path, pred, pred_dir)
