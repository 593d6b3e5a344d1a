"""Oracle: our PQ equals hotcoco's (a Rust implementation verified against panopticapi) on random sets."""

from __future__ import annotations

import json

import hotcoco.panoptic as hotcoco_panoptic  # test-only dependency (pyproject [test])
import pytest

from spatialflow.benchmarks.pq import write_random_pairs
from spatialflow.panoptic.pq import pq_compute


def _hotcoco(paths) -> dict:
    evaluation = hotcoco_panoptic.PanopticEval(
        str(paths["gt_json"]), str(paths["pred_json"]), gt_folder=str(paths["gt_dir"]), pred_folder=str(paths["pred_dir"])
    )
    evaluation.evaluate()
    return evaluation.results()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_sets_match_hotcoco_per_class(tmp_path, seed):
    # 12 images of 36x48 with crowd GT, void, relabels, shifts, missing and extra segments (see the generator).
    paths = write_random_pairs(tmp_path, 12, 36, 48, segments=12, seed=seed)
    ours = pq_compute(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"], progress=False)
    theirs = _hotcoco(paths)
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == theirs[group]["n"]
        for key in ("pq", "sq", "rq"):
            assert ours[group][key] == pytest.approx(100 * theirs[group][key], abs=1e-9), (group, key)
    assert set(ours["per_class"]) == {str(k) for k in theirs["per_class"]}
    for category_id, expected in theirs["per_class"].items():
        got = ours["per_class"][str(category_id)]
        assert (got["tp"], got["fp"], got["fn"]) == (expected["tp"], expected["fp"], expected["fn"]), category_id
        for key in ("pq", "sq", "rq"):
            assert got[key] == pytest.approx(100 * expected[key], abs=1e-9), (category_id, key)


def test_random_set_exercises_every_rule(tmp_path):
    # Guard on the generator itself: the oracle comparison only means something if the random sets
    # contain TPs, FPs, FNs and crowd segments.
    paths = write_random_pairs(tmp_path, 12, 36, 48, segments=12, seed=0)
    ours = pq_compute(paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"], progress=False)
    totals = {k: sum(c[k] for c in ours["per_class"].values()) for k in ("tp", "fp", "fn")}
    assert all(v > 0 for v in totals.values()), totals
    gt = json.loads(paths["gt_json"].read_text())
    assert any(s["iscrowd"] for a in gt["annotations"] for s in a["segments_info"])


def test_workers_do_not_change_the_result(tmp_path):
    # 40 images > one chunk of 32: two processes; chunk sums are added in order, so equality is exact.
    paths = write_random_pairs(tmp_path, 40, 24, 32, segments=8, seed=3)
    files = (paths["gt_json"], paths["gt_dir"], paths["pred_json"], paths["pred_dir"])
    assert pq_compute(*files, workers=2, progress=False) == pq_compute(*files, workers=1, progress=False)
