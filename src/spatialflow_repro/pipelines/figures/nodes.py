"""The paper's figures, regenerated: Table 1's lambda curve, panoptic overlays (Figures 5-6) and CAM
heat-maps of the cls and stuff heads (Figure 4), each baseline vs SpatialFlow.

Every figure lands in the catalog's ``figures_folder`` as a small PNG (the panoptic overlays are also
logged to the compared rows' MLflow runs); the lambda curve's points also as CSV (a DVC plot). Which rows
are compared and on how many val images: ``params.yaml`` ``figures``. A figure whose inputs do not exist
in the active profile is written as a placeholder PNG that says so, so every DVC output always exists.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from spatialflow.data.coco_panoptic import load_panoptic_json, read_image, read_panoptic_png
from spatialflow.data.visualize import heatmap_overlay, panoptic_overlay
from spatialflow.errors import DataError
from spatialflow.inference.cam import cam_heatmaps
from spatialflow.utils.atomic import atomic_save_image
from spatialflow_repro import tracking
from spatialflow_repro.pipelines.tables.nodes import SELECTED, RowMetrics, build_table, check_paper_tables, selected_weight

log = logging.getLogger(__name__)

NUM_IMAGES = 4  # val images per figure (the first ones by image id, the same in every figure)
PANEL_SIZE = (96, 128)  # (height, width) of one grid cell
GAP = 4
TITLE_HEIGHT = 14


# ---------------------------------------------------------------------------------- lambda curve


def lambda_curve_points(table1: dict[str, Any]) -> list[dict[str, float]]:
    """Reproduced PQ / PQ_th / PQ_st per lambda (rows that ran), by ascending lambda."""
    points = [{"lambda": float(r["labels"]["lambda"]), **{k: r["reproduced"][k] for k in ("pq", "pq_th", "pq_st")}}
              for r in table1["rows"] if r["status"] == "reproduced"]
    return sorted(points, key=lambda p: p["lambda"])


def lambda_curve_csv(points: list[dict[str, float]]) -> str:
    """CSV with columns lambda,pq,pq_th,pq_st (DVC plots read it)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["lambda", "pq", "pq_th", "pq_st"], lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({k: repr(round(float(v), 3)) for k, v in p.items()})
    return out.getvalue()


def plot_lambda_curve(table1: dict[str, Any], path: str | os.PathLike) -> None:
    """PQ / PQ_th / PQ_st vs lambda: reproduced (solid), published (dashed), selected lambda (grey line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = lambda_curve_points(table1)
    published = sorted(({"lambda": float(r["labels"]["lambda"]), **r["published"]} for r in table1["rows"]),
                       key=lambda p: p["lambda"])
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for key, label, color in (("pq", "PQ", "C0"), ("pq_th", "PQ$^{Th}$", "C1"), ("pq_st", "PQ$^{St}$", "C2")):
        ax.plot([p["lambda"] for p in published], [p[key] for p in published], "--", color=color, alpha=0.6,
                label=f"{label} (paper)")
        if points:
            ax.plot([p["lambda"] for p in points], [p[key] for p in points], "o-", color=color,
                    label=f"{label} (reproduced)")
    if table1.get(SELECTED) is not None:
        ax.axvline(table1[SELECTED], color="grey", linewidth=1, label="selected λ")
    ax.set_xlabel("λ (stuff-loss weight)")
    ax.set_ylabel("%")
    ax.set_title(table1["caption"], fontsize=8)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    buffer.seek(0)
    atomic_save_image(path, Image.open(buffer))


def draw_lambda_curve(profile: str, paper: dict[str, Any], lambda_metrics: dict[str, dict],
                      lambda_search: dict[str, Any] | None, figures_folder: str) -> str:
    """Kedro node: ``lambda_curve.png`` in the figures folder from Table 1's rows; returns the points as CSV."""
    metrics = RowMetrics(lambda_metrics, {}, {})
    table1 = build_table(1, check_paper_tables(paper), profile, metrics, selected_weight(lambda_search))
    plot_lambda_curve(table1, Path(figures_folder) / "lambda_curve.png")
    return lambda_curve_csv(lambda_curve_points(table1))


# -------------------------------------------------------------------------------------- image grid


def fit_panel(image: np.ndarray, size: tuple[int, int] = PANEL_SIZE) -> np.ndarray:
    """Scale an (H, W, 3) uint8 image to fit ``size`` (height, width), centred on white."""
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    new = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    resized = np.asarray(Image.fromarray(image).resize(new, Image.BILINEAR))
    panel = np.full((height, width, 3), 255, dtype=np.uint8)
    top, left = (height - new[1]) // 2, (width - new[0]) // 2
    panel[top:top + new[1], left:left + new[0]] = resized
    return panel


def image_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str],
               panel_size: tuple[int, int] = PANEL_SIZE) -> Image.Image:
    """A grid with one column per title and one row per entry of ``rows``; column titles on top.

    Size: width = n_cols * panel_w + (n_cols + 1) * GAP, height = TITLE_HEIGHT + n_rows * (panel_h + GAP) + GAP.
    """
    n_cols, (ph, pw) = len(titles), panel_size
    for i, row in enumerate(rows):
        if len(row) != n_cols:
            raise ValueError(f"grid row {i} has {len(row)} panels, expected {n_cols}")
    width = n_cols * pw + (n_cols + 1) * GAP
    height = TITLE_HEIGHT + len(rows) * (ph + GAP) + GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((GAP + c * (pw + GAP), 1), title, fill="black")
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            canvas.paste(Image.fromarray(fit_panel(panel, panel_size)),
                         (GAP + c * (pw + GAP), TITLE_HEIGHT + GAP + r * (ph + GAP)))
    return canvas


def placeholder(text: str, size: tuple[int, int] = (60, 400)) -> Image.Image:
    """A small white PNG saying why a figure is missing."""
    canvas = Image.new("RGB", (size[1], size[0]), "white")
    ImageDraw.Draw(canvas).text((GAP, GAP), text, fill="black")
    return canvas


# -------------------------------------------------------------------------------- panoptic overlays


def load_segmentation(json_path: str | os.PathLike, png_dir: str | os.PathLike) -> dict[Any, dict]:
    """A COCO-panoptic JSON + PNG folder -> {image_id: {"image": info, "annotation": ann, "png": path}}."""
    data = load_panoptic_json(json_path)
    images = {img["id"]: img for img in data["images"]}
    return {ann["image_id"]: {"image": images[ann["image_id"]], "annotation": ann,
                              "png": Path(png_dir) / ann["file_name"], "categories": data["categories"]}
            for ann in data["annotations"]}


def overlay_panel(image: np.ndarray, entry: dict) -> np.ndarray:
    """One segmentation (an entry of :func:`load_segmentation`) coloured over ``image``."""
    ids = read_panoptic_png(entry["png"])
    if ids.shape != image.shape[:2]:
        raise DataError(entry["png"], f"segmentation is {ids.shape}, the image is {image.shape[:2]}")
    return panoptic_overlay(image, ids, entry["annotation"]["segments_info"], entry["categories"])


def overlay_rows(gt_split: dict[str, str], predictions: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
                 num_images: int = NUM_IMAGES) -> list[list[np.ndarray]]:
    """Per image (the first ``num_images`` ids that every prediction has): image | GT | each prediction.

    ``gt_split``: {"json", "png_dir", "image_dir"}; ``predictions``: (json, png_dir) per compared model.
    """
    gt = load_segmentation(gt_split["json"], gt_split["png_dir"])
    preds = [load_segmentation(j, d) for j, d in predictions]
    common = sorted(set(gt).intersection(*preds), key=str)[:num_images]
    if not common:
        raise DataError(gt_split["json"], "no image id in common with the predictions")
    rows = []
    for image_id in common:
        image = read_image(Path(gt_split["image_dir"]) / gt[image_id]["image"]["file_name"])
        rows.append([image, overlay_panel(image, gt[image_id])] + [overlay_panel(image, p[image_id]) for p in preds])
    return rows


def row_val_metrics(val_metrics: dict[str, dict], row: str, profile: str) -> dict | None:
    """A row's val metrics if it ran in ``profile`` (None when absent, skipped or of another profile)."""
    metrics = val_metrics.get(row)
    if not metrics or metrics.get("skipped") or metrics.get("profile") != profile:
        return None
    return metrics


PREDICTION_NAMES = (("panoptic_pred.json", "panoptic_pred"), ("panoptic.json", "panoptic"))


def prediction_folder(metrics: dict) -> tuple[Path, Path] | None:
    """(JSON, PNG folder) of a row's first-seed val predictions (``spatialflow.inference.evaluate``'s
    ``panoptic_pred.json`` + ``panoptic_pred/``, as its metrics record them), or None if there are none."""
    folders = [Path(s["predictions"]) for s in metrics.get("per_seed", []) if s.get("predictions")]
    for folder in folders:
        for json_name, png_name in PREDICTION_NAMES:
            if (folder / json_name).is_file():
                png_dir = folder / png_name if (folder / png_name).is_dir() else folder
                return folder / json_name, png_dir
    return None


def val_split(manifest: dict | None, metrics: dict) -> dict | None:
    """The GT val split ({json, png_dir, image_dir}) of the row's dataset, from the data manifest."""
    return ((manifest or {}).get(metrics.get("dataset")) or {}).get("splits", {}).get("val")


def _compared(profile: str, figures: dict, manifest: dict | None,
              val_metrics: dict[str, dict]) -> tuple[list[str], list[dict], dict] | None:
    """([baseline row, SpatialFlow row], their val metrics, the GT val split) if both ran in ``profile``."""
    rows = [figures["baseline_row"], figures["spatialflow_row"]]
    metrics = [row_val_metrics(val_metrics, r, profile) for r in rows]
    if not all(metrics):
        return None
    split = val_split(manifest, metrics[0])
    return (rows, metrics, split) if split else None


def draw_panoptic_overlays(profile: str, figures: dict, manifest: dict | None, val_metrics: dict[str, dict],
                           figures_folder: str) -> dict[str, Any]:
    """Kedro node: ``panoptic_overlays.png``: image | GT | baseline | SpatialFlow per val image.

    ``figures``: params.yaml's {baseline_row, spatialflow_row, num_images}."""
    path = Path(figures_folder) / "panoptic_overlays.png"
    compared = _compared(profile, figures, manifest, val_metrics)
    folders = compared and [prediction_folder(m) for m in compared[1]]
    if not compared or not all(folders):
        log.info("panoptic overlays: %s / %s have no val predictions in profile %s; writing a placeholder",
                 figures["baseline_row"], figures["spatialflow_row"], profile)
        atomic_save_image(path, placeholder(f"panoptic overlays: not run in profile {profile}"))
        return {"profile": profile, "rows": None}
    rows, _, split = compared
    grid_rows = overlay_rows(split, folders, int(figures.get("num_images", NUM_IMAGES)))
    titles = ["image", "ground truth", f"baseline ({rows[0]})", f"SpatialFlow ({rows[1]})"]
    atomic_save_image(path, image_grid(grid_rows, titles))
    tracking.log_figure([s.get("mlflow_run_id") for m in compared[1] for s in m.get("per_seed", [])], path)
    return {"profile": profile, "rows": rows, "images": len(grid_rows)}


# ------------------------------------------------------------------------------------ CAM heat-maps


def cam_rows(models: Sequence[torch.nn.Module], images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """Per image: image | cls of each model | stuff of each model (heat-maps over the image)."""
    tensors = [torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0 for img in images]
    per_model = [cam_heatmaps(m, tensors) for m in models]
    return [[img] + [heatmap_overlay(img, maps[i]["cls"]) for maps in per_model]
            + [heatmap_overlay(img, maps[i]["stuff"]) for maps in per_model]
            for i, img in enumerate(images)]


def final_model_path(training: dict | None) -> Path | None:
    """The first seed's final checkpoint of a trained row (from its ``training.json``)."""
    seeds = (training or {}).get("seeds") or []
    path = seeds[0].get("final_model") if seeds else None
    return Path(path) if path and Path(path).is_file() else None


def _eval_image(image: np.ndarray, cfg: Any) -> np.ndarray:
    """The image at the row's test size (the transforms' shorter side / max size)."""
    from spatialflow.inference.predict import resized_size

    t = cfg.data.transforms
    h, w = resized_size(image.shape[:2], t.eval_min_size, t.max_size)
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def draw_cam_heatmaps(profile: str, figures: dict, manifest: dict | None, val_metrics: dict[str, dict],
                      baseline_training: dict | None, spatialflow_training: dict | None,
                      figures_folder: str) -> dict[str, Any]:
    """Kedro node: ``cam_heatmaps.png``: image | cls baseline | cls SpatialFlow | stuff baseline |
    stuff SpatialFlow, per val image (paper Figure 4)."""
    from spatialflow.engine.trainer import load_trained_model

    path = Path(figures_folder) / "cam_heatmaps.png"
    compared = _compared(profile, figures, manifest, val_metrics)
    checkpoints = compared and [final_model_path(t) for t in (baseline_training, spatialflow_training)]
    if not compared or not all(checkpoints):
        log.info("CAM heat-maps: %s / %s have no checkpoints in profile %s; writing a placeholder",
                 figures["baseline_row"], figures["spatialflow_row"], profile)
        atomic_save_image(path, placeholder(f"CAM heat-maps: not run in profile {profile}"))
        return {"profile": profile, "rows": None}
    rows, _, split = compared
    loaded = [load_trained_model(p) for p in checkpoints]
    gt = load_segmentation(split["json"], split["png_dir"])
    first = sorted(gt, key=str)[:int(figures.get("num_images", NUM_IMAGES))]
    images = [_eval_image(read_image(Path(split["image_dir"]) / gt[i]["image"]["file_name"]), loaded[0][1])
              for i in first]
    grid_rows = cam_rows([model for model, _, _ in loaded], images)
    titles = ["image", "cls: baseline", "cls: SpatialFlow", "stuff: baseline", "stuff: SpatialFlow"]
    atomic_save_image(path, image_grid(grid_rows, titles))
    return {"profile": profile, "rows": rows, "images": len(grid_rows)}

