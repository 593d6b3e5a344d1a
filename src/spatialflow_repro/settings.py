"""Kedro project settings: params.yaml-aware config loader, and the hook that checks the grid first."""

from spatialflow_repro.config_loader import ParamsYamlConfigLoader
from spatialflow_repro.hooks import CheckParamsHook, StageProgressHook

CONFIG_LOADER_CLASS = ParamsYamlConfigLoader
CONFIG_LOADER_ARGS = {"base_env": "base", "default_run_env": "local"}
HOOKS = (CheckParamsHook(), StageProgressHook())
