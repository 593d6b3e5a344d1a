"""`spatialflow evaluate`, `spatialflow package-submission`, the writer round trip and the pq benchmark."""

from __future__ import annotations

import argparse
import json
import zipfile

import numpy as np
import pytest

from helpers.paths import FIXTURES
from spatialflow.benchmarks import pq as pq_benchmark
from spatialflow.cli import main
from spatialflow.data.coco_panoptic import PanopticWriter
from spatialflow.errors import ConfigError, DataError
from spatialflow.data.panoptic_ids import read_segment_ids
from spatialflow.panoptic.pq import pq_compute
from spatialflow.panoptic.submission import package_submission

PAIR = FIXTURES / "panoptic_gt_pred_pair"
COCO = FIXTURES / "coco_panoptic_sample"
COCO_JSON = COCO / "panoptic_val2017_sample.json"


def _pair_args(*extra: str) -> list[str]:
    return ["evaluate", "--gt-json", str(PAIR / "coco_gt.json"), "--gt-dir", str(PAIR / "coco_gt"),
            "--pred-json", str(PAIR / "coco_pred.json"), "--pred-dir", str(PAIR / "coco_pred"), *extra]


def test_evaluate_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "pq.json"
    assert main(_pair_args("--json-out", str(out), "--workers", "2")) == 0
    printed = capsys.readouterr().out
    # The official numbers (expected_pq.json) rounded to one decimal, as panopticapi prints them.
    assert "All       |   67.4   68.3   82.1     6" in printed
    assert "Things    |   57.7   59.1   73.1     4" in printed
    assert "Stuff     |   86.8   86.8  100.0     2" in printed
    written = json.loads(out.read_text())
    expected = json.loads((PAIR / "expected_pq.json").read_text())
    assert written["All"]["pq"] == pytest.approx(expected["All"]["pq"], abs=1e-9)
    assert set(written["per_class"]) == {"1", "2", "3", "4", "5", "6"}
    # umbrella (2): its only GT segment is missed -> FN 1, PQ 0.
    assert written["per_class"]["2"] == {"name": "umbrella", "isthing": True, "pq": 0.0, "sq": 0.0, "rq": 0.0,
                                         "tp": 0, "fp": 0, "fn": 1}


def test_evaluate_error_is_one_line_exit_2(tmp_path, capsys):
    pred = json.loads((PAIR / "coco_pred.json").read_text())
    pred["annotations"] = pred["annotations"][:3]
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps(pred))
    args = _pair_args()
    args[args.index("--pred-json") + 1] = str(pred_json)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"spatialflow evaluate: error: {pred_json}: no prediction for 1 ground-truth images")


def test_writer_round_trip_gives_100(tmp_path):
    # Write the GT as a prediction through the inference writer, read it back with the evaluator.
    gt = json.loads(COCO_JSON.read_text())
    pred_json, pred_dir = tmp_path / "pred.json", tmp_path / "pred"
    images = {image["id"]: image for image in gt["images"]}
    with PanopticWriter(pred_dir, pred_json, gt["categories"]) as writer:
        for annotation in gt["annotations"]:
            ids = read_segment_ids(COCO / "panoptic" / annotation["file_name"])
            segments = [{"id": s["id"], "category_id": s["category_id"], "iscrowd": s["iscrowd"]}
                        for s in annotation["segments_info"]]
            writer.add(images[annotation["image_id"]], ids, segments)
    result = pq_compute(COCO_JSON, COCO / "panoptic", pred_json, pred_dir, progress=False)
    assert [result[g]["pq"] for g in ("All", "Things", "Stuff")] == [100.0, 100.0, 100.0]
    assert result["All"]["n"] == 8


def test_package_submission_layout(tmp_path, capsys):
    out = tmp_path / "upload"
    assert main(["package-submission", "--pred-json", str(PAIR / "coco_pred.json"), "--pred-dir",
                 str(PAIR / "coco_pred"), "--method", "SpatialFlow-R50", "--out-dir", str(out)]) == 0
    name = "panoptic_test-dev2017_SpatialFlow-R50_results"
    assert (out / f"{name}.json").is_file()
    with zipfile.ZipFile(out / f"{name}.zip") as archive:
        names = sorted(archive.namelist())
        assert names == sorted([f"{name}.json"] + [f"{name}/{p}" for p in
                                                   ("bird.png", "cat.png", "congress.png", "team.png")])
        assert archive.read(f"{name}/cat.png") == (PAIR / "coco_pred" / "cat.png").read_bytes()
        assert json.loads(archive.read(f"{name}.json")) == json.loads((PAIR / "coco_pred.json").read_text())


def test_package_submission_checks(tmp_path):
    with pytest.raises(ConfigError, match="no '_'"):
        package_submission(PAIR / "coco_pred.json", PAIR / "coco_pred", tmp_path, "spatial_flow")
    info = tmp_path / "image_info.json"
    info.write_text(json.dumps({"images": [{"id": i} for i in (1, 2, 3, 4, 5)]}))
    with pytest.raises(DataError, match=r"no annotation for 1 images, e\.g\. \[5\]"):
        package_submission(PAIR / "coco_pred.json", PAIR / "coco_pred", tmp_path, "m", image_info_json=info)
    pred = json.loads((PAIR / "coco_pred.json").read_text())
    pred["annotations"][1]["segments_info"] = []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(pred))
    with pytest.raises(DataError, match=r"cat\.png: PNG segment ids \[36493\] not in the JSON"):
        package_submission(bad, PAIR / "coco_pred", tmp_path / "out", "m")
    assert not (tmp_path / "out").exists()  # nothing written when the check fails


def test_pq_benchmark_prints_figures(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    pq_benchmark.add_arguments(parser)
    assert pq_benchmark.run(parser.parse_args(["--images", "3", "--size", "24x32", "--repeats", "1"])) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["images"] == 3 and figures["size"] == "24x32"
    assert figures["ours_1_worker_images_per_s"] > 0 and figures["hotcoco_images_per_s"] > 0
    assert figures["max_abs_difference_pq_all"] < 1e-9


def test_random_pairs_are_valid_coco_panoptic(tmp_path):
    paths = pq_benchmark.write_random_pairs(tmp_path, 2, 20, 30, segments=6, seed=1)
    gt = json.loads(paths["gt_json"].read_text())
    for annotation in gt["annotations"]:
        ids = read_segment_ids(paths["gt_dir"] / annotation["file_name"])
        areas = {s["id"]: s["area"] for s in annotation["segments_info"]}
        present, counts = np.unique(ids[ids > 0], return_counts=True)
        assert dict(zip(present.tolist(), counts.tolist())) == areas
