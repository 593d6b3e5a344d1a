"""Kedro project settings: params.yaml-aware config loader and the MLflow hook."""

from spatialflow_repro.config_loader import ParamsYamlConfigLoader

CONFIG_LOADER_CLASS = ParamsYamlConfigLoader
CONFIG_LOADER_ARGS = {"base_env": "base", "default_run_env": "local"}
