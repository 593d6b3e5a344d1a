"""Tables 1-7 of the paper, regenerated next to the published numbers."""

from spatialflow_repro.pipelines.tables.pipeline import create_pipeline

__all__ = ["create_pipeline"]
