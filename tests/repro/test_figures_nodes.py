"""Figures: lambda curve CSV/PNG, overlay grids of the expected size, CAM heat-maps from forward hooks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from helpers.paths import FIXTURES
from spatialflow.engine.checkpoint import save_checkpoint
from spatialflow.engine.config import DataConfig, ExperimentConfig, TransformConfig, experiment_to_dict
from spatialflow.data.visualize import heatmap_overlay
from spatialflow.engine.trainer import default_model
from spatialflow.inference.cam import cam_heatmaps
from spatialflow.models.config import model_config
from spatialflow.models.spatialflow import SpatialFlow
from spatialflow.utils.yaml_io import read_yaml
from spatialflow_repro.datasets import FolderPath, JSONDataset, JSONFolderDataset, TextDataset, YAMLDataset
from spatialflow_repro.pipelines.figures import create_pipeline
from spatialflow_repro.pipelines.figures import nodes
from spatialflow_repro.pipelines.tables.nodes import build_table
from test_tables_nodes import PAPER_TABLES, metrics_in

SAMPLE = FIXTURES / "coco_panoptic_sample"
GT_SPLIT = {"json": str(SAMPLE / "panoptic_val2017_sample.json"), "png_dir": str(SAMPLE / "panoptic"),
            "image_dir": str(SAMPLE / "images")}


def write_row(metrics_dir: Path, kind: str, row: str, pq: float, pq_th: float, pq_st: float,
              predictions: str | None = None) -> None:
    """<metrics_dir>/<kind>/<row>.json as the train pipeline writes it."""
    metrics = {"All": {"pq": pq, "sq": 70.0, "rq": 50.0}, "Things": {"pq": pq_th}, "Stuff": {"pq": pq_st}}
    entry = {"seed": 0, "mlflow_run_id": "r", "metrics": metrics, "predictions": predictions}
    (metrics_dir / kind).mkdir(parents=True, exist_ok=True)
    (metrics_dir / kind / f"{row}.json").write_text(json.dumps(
        {"row": row, "profile": "tiny", "dataset": "coco", "ran": "x", "has_ground_truth": True, "seeds": [0],
         "per_seed": [entry]}))


def test_lambda_curve_points_csv_and_png(tmp_path: Path) -> None:
    write_row(tmp_path, "lambda", "t1_lambda_0_25", 30.0, 35.5, 20.25)
    write_row(tmp_path, "lambda", "t1_lambda_1_00", 28.0, 31.0, 24.0)
    table1 = build_table(1, read_yaml(PAPER_TABLES), "tiny", metrics_in(tmp_path), selected=0.25)
    points = nodes.lambda_curve_points(table1)
    # only the two rows that ran, by ascending lambda (the paper lists 1.0 first)
    assert nodes.lambda_curve_csv(points) == ("lambda,pq,pq_th,pq_st\n"
                                              "0.25,30.0,35.5,20.25\n"
                                              "1.0,28.0,31.0,24.0\n")
    nodes.plot_lambda_curve(table1, tmp_path / "curve.png")
    with Image.open(tmp_path / "curve.png") as img:
        assert img.size == (500, 320)  # figsize (5, 3.2) inches at 100 dpi


def test_image_grid_size_and_layout() -> None:
    red = np.zeros((96, 128, 3), dtype=np.uint8)
    red[..., 0] = 255
    grid = nodes.image_grid([[red] * 4] * 3, ["a", "b", "c", "d"])
    # width 4 * 128 + 5 * 4 = 532; height 14 + 3 * (96 + 4) + 4 = 318
    assert grid.size == (532, 318)
    pixels = np.asarray(grid)
    # second column, third row starts at x = 4 + 132 = 136, y = 14 + 4 + 2 * 100 = 218
    assert tuple(pixels[218, 136]) == (255, 0, 0) and tuple(pixels[217, 136]) == (255, 255, 255)
    with pytest.raises(ValueError, match="grid row 0 has 3 panels, expected 4"):
        nodes.image_grid([[red] * 3], ["a", "b", "c", "d"])


def test_fit_panel_letterboxes() -> None:
    black = np.zeros((50, 200, 3), dtype=np.uint8)
    panel = nodes.fit_panel(black, (96, 128))
    # scale min(96 / 50, 128 / 200) = 0.64 -> 32 x 128, top = (96 - 32) // 2 = 32
    assert panel.shape == (96, 128, 3)
    assert panel[31].min() == 255 and panel[32].max() == 0 and panel[63].max() == 0 and panel[64].min() == 255


def test_overlay_rows_on_real_coco_sample() -> None:
    # GT twice as "predictions": rows are image | GT | pred | pred for both sample images (ids sorted)
    rows = nodes.overlay_rows(GT_SPLIT, [(GT_SPLIT["json"], GT_SPLIT["png_dir"])] * 2, num_images=3)
    assert len(rows) == 2 and all(len(r) == 4 for r in rows)
    assert rows[0][0].shape == (427, 640, 3) and rows[1][0].shape == (360, 640, 3)  # ids 142238, 439180
    assert np.array_equal(rows[0][1], rows[0][2]) and not np.array_equal(rows[0][0], rows[0][1])
    grid = nodes.image_grid(rows, ["image", "GT", "baseline", "SpatialFlow"])
    assert grid.size == (532, 14 + 2 * 100 + 4)


def tiny_model(preset: str) -> SpatialFlow:
    torch.manual_seed(0)
    cfg = model_config(preset, depth=18, fpn_channels=32, stuff_channels=32, mask_channels=32,
                       num_things=3, num_stuff=2)
    return SpatialFlow(cfg)


def test_cam_heatmaps_reads_the_heads_through_hooks() -> None:
    model = tiny_model("spatialflow").train()
    # constant heads: cls logits 0 -> sigmoid 0.5 everywhere; equal stuff logits over 2 stuff + 'other'
    # -> softmax 1/3 each, max over the 2 stuff classes = 1/3
    torch.nn.init.zeros_(model.cls_head.conv.weight)
    torch.nn.init.zeros_(model.cls_head.conv.bias)
    torch.nn.init.zeros_(model.stuff_head.classifier.weight)
    torch.nn.init.zeros_(model.stuff_head.classifier.bias)
    images = [torch.rand(3, 40, 56), torch.rand(3, 64, 50)]
    maps = cam_heatmaps(model, images)
    assert [m["cls"].shape for m in maps] == [(40, 56), (64, 50)]
    assert [m["stuff"].shape for m in maps] == [(40, 56), (64, 50)]
    assert np.allclose(maps[1]["cls"], 0.5) and np.allclose(maps[1]["stuff"], 1 / 3)
    assert model.training  # mode restored
    assert not model.cls_head.conv._forward_hooks and not model.stuff_head._forward_hooks


def test_cam_rows_compare_baseline_and_spatialflow() -> None:
    models = [tiny_model("baseline"), tiny_model("spatialflow")]
    image = np.full((40, 48, 3), 128, dtype=np.uint8)
    rows = nodes.cam_rows(models, [image])
    assert len(rows) == 1 and len(rows[0]) == 5 and all(p.shape == (40, 48, 3) for p in rows[0])
    heat = heatmap_overlay(np.zeros((1, 1, 3), dtype=np.uint8), np.zeros((1, 1)), alpha=1.0)
    assert tuple(heat[0, 0]) == (0, 0, 128)  # jet(0) = dark blue (0, 0, 0.5)


def _copy_predictions(dest: Path) -> str:
    """The GT sample as a seed's val predictions (panoptic_pred.json + panoptic_pred/)."""
    (dest / "panoptic_pred").mkdir(parents=True)
    shutil.copy(GT_SPLIT["json"], dest / "panoptic_pred.json")
    for png in Path(GT_SPLIT["png_dir"]).iterdir():
        shutil.copy(png, dest / "panoptic_pred" / png.name)
    return str(dest)


def _save_tiny_checkpoint(path: Path, preset: str) -> None:
    categories = json.loads(Path(GT_SPLIT["json"]).read_text())["categories"]
    cfg = ExperimentConfig(model={"preset": preset, "depth": 18, "fpn_channels": 32, "stuff_channels": 32,
                                  "mask_channels": 32},
                           data=DataConfig(transforms=TransformConfig(min_size=48, max_size=64)))
    torch.manual_seed(0)
    model = default_model(cfg, categories)
    save_checkpoint(path, {"model": model.state_dict(), "config": experiment_to_dict(cfg), "categories": categories})


FIGURES = {"baseline_row": "t2_baseline", "spatialflow_row": "t2_spatialflow", "num_images": 4}


def _catalog(root: Path) -> DataCatalog:
    """The figures pipeline's catalog entries, under ``root``."""
    metrics = root / "metrics"
    return DataCatalog({
        "params:profile": MemoryDataset("tiny"), "params:figures": MemoryDataset(FIGURES),
        "paper_tables": YAMLDataset(str(PAPER_TABLES)),
        "lambda_row_metrics": JSONFolderDataset(str(metrics / "lambda"), allow_missing=True),
        "val_row_metrics": JSONFolderDataset(str(metrics / "val"), allow_missing=True),
        "lambda_search": JSONDataset(str(root / "lambda_search.json"), allow_missing=True),
        "datasets_manifest": JSONDataset(str(root / "datasets.json"), allow_missing=True),
        **{f"{row}.training": JSONDataset(str(root / row / "training.json"), allow_missing=True)
           for row in (FIGURES["baseline_row"], FIGURES["spatialflow_row"])},
        "lambda_curve": TextDataset(str(root / "lambda_curve.csv")),
        "figures_folder": FolderPath(str(root / "figures")),
    })


def test_figures_pipeline_with_and_without_inputs(tmp_path: Path) -> None:
    pipeline = create_pipeline(FIGURES["baseline_row"], FIGURES["spatialflow_row"])
    SequentialRunner().run(pipeline, _catalog(tmp_path))
    figures = tmp_path / "figures"
    assert sorted(p.name for p in figures.iterdir()) == [
        "cam_heatmaps.png", "lambda_curve.png", "panoptic_overlays.png"]
    assert (tmp_path / "lambda_curve.csv").read_text() == "lambda,pq,pq_th,pq_st\n"
    with Image.open(figures / "panoptic_overlays.png") as img:
        assert img.size == (400, 60)  # the "not run in profile tiny" placeholder

    trainings = {}
    for row, preset in (("t2_baseline", "baseline"), ("t2_spatialflow", "spatialflow")):
        predictions = _copy_predictions(tmp_path / "predictions" / row / "seed0")
        write_row(tmp_path / "metrics", "val", row, 30.0, 30.0, 30.0, predictions)
        final = tmp_path / row / "model_final.pt"
        _save_tiny_checkpoint(final, preset)
        trainings[row] = {"seeds": [{"seed": 0, "final_model": str(final)}]}
    manifest = {"profile": "tiny", "coco": {"splits": {"val": GT_SPLIT}}}
    val_metrics = metrics_in(tmp_path / "metrics").val

    result = nodes.draw_panoptic_overlays("tiny", FIGURES, manifest, val_metrics, str(figures))
    assert result["rows"] == ["t2_baseline", "t2_spatialflow"] and result["images"] == 2  # the sample has 2
    with Image.open(figures / "panoptic_overlays.png") as img:
        assert img.size == (532, 218)  # 4 columns x 2 images
    result = nodes.draw_cam_heatmaps("tiny", FIGURES, manifest, val_metrics, trainings["t2_baseline"],
                                     trainings["t2_spatialflow"], str(figures))
    assert result["images"] == 2
    with Image.open(figures / "cam_heatmaps.png") as img:
        assert img.size == (5 * 128 + 6 * 4, 218)  # 5 columns x 2 images
    # another profile's figures: the same files say "not run"
    assert nodes.draw_cam_heatmaps("coco", FIGURES, manifest, val_metrics, trainings["t2_baseline"],
                                   trainings["t2_spatialflow"], str(figures))["rows"] is None
