"""Wires the figures: row metrics, predictions and checkpoints -> the figures folder and the lambda curve."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from spatialflow_repro.pipelines.figures.nodes import draw_cam_heatmaps, draw_lambda_curve, draw_panoptic_overlays


def create_pipeline(baseline_row: str, spatialflow_row: str) -> Pipeline:
    """``baseline_row`` / ``spatialflow_row``: the compared rows (params.yaml ``figures``), whose training
    records name the checkpoints of the CAM figure."""
    compared = ["params:profile", "params:figures", "datasets_manifest", "val_row_metrics"]
    return Pipeline([
        Node(draw_lambda_curve,
             inputs=["params:profile", "paper_tables", "lambda_row_metrics", "lambda_search", "figures_folder"],
             outputs="lambda_curve", name="draw_lambda_curve"),
        Node(draw_panoptic_overlays, inputs=[*compared, "figures_folder"], outputs="panoptic_overlays",
             name="draw_panoptic_overlays"),
        Node(draw_cam_heatmaps,
             inputs=[*compared, f"{baseline_row}.training", f"{spatialflow_row}.training", "figures_folder"],
             outputs="cam_heatmaps", name="draw_cam_heatmaps"),
    ])
