"""The paper's figures: lambda curve, panoptic overlays, CAM heat-maps (baseline vs SpatialFlow)."""

from spatialflow_repro.pipelines.figures.pipeline import create_pipeline

__all__ = ["create_pipeline"]
