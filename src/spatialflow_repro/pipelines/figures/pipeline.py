"""Wires the figures: row metrics, predictions and checkpoints on disk -> data/08_reporting/figures/."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from spatialflow_repro.pipelines.figures.nodes import draw_cam_heatmaps, draw_lambda_curve, draw_panoptic_overlays


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(draw_lambda_curve, inputs="params:profile", outputs="lambda_curve", name="draw_lambda_curve"),
        Node(draw_panoptic_overlays, inputs=["params:profile", "params:figures"], outputs="panoptic_overlays",
             name="draw_panoptic_overlays"),
        Node(draw_cam_heatmaps, inputs=["params:profile", "params:figures"], outputs="cam_heatmaps",
             name="draw_cam_heatmaps"),
    ])
