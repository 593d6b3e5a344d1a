"""Kedro pipelines: plain functions of spatialflow in nodes.py, wiring in pipeline.py."""
