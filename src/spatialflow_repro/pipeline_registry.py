"""Registers the project's pipelines (each one only wires plain functions of ``spatialflow``)."""

from __future__ import annotations

from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    from spatialflow_repro.pipelines import registry

    return registry.build_pipelines()
