"""Kedro reads ``params.yaml`` (DVC's parameter file) as its base parameters.

Precedence, lowest first: ``params.yaml`` < ``conf/base/parameters*`` < ``conf/<env>/parameters*`` <
``kedro run --params``. Every level is deep-merged, so ``--params train.lr=0.1`` changes ``train.lr`` and
keeps every sibling key of ``train`` (a plain Kedro resolver on params.yaml would drop them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import DictConfig, OmegaConf

from spatialflow.utils.yaml_io import read_yaml

PARAMS_FILE = "params.yaml"


def _apply_runtime_params(config: DictConfig, runtime: dict[str, Any]) -> None:
    """``--params`` into ``config`` in place: a dotted key (``a.b``) or a nested dict, merged into what is
    there (``OmegaConf.update(..., merge=True)``); Kedro hands either form depending on its version."""
    for key, value in runtime.items():
        OmegaConf.update(config, str(key), value, merge=True)


class ParamsYamlConfigLoader(OmegaConfigLoader):
    """OmegaConfigLoader whose ``parameters`` start from the project's ``params.yaml``."""

    @property
    def params_path(self) -> Path:
        return Path(self.conf_source).resolve().parent / PARAMS_FILE

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key != "parameters":
            return super().__getitem__(key)
        runtime = dict(self.runtime_params or {})
        self.runtime_params = {}
        try:
            conf_params = super().__getitem__("parameters")
        except MissingConfigException:
            conf_params = {}
        finally:
            self.runtime_params = runtime
        base: dict[str, Any] = {}
        if self.params_path.exists():
            base = read_yaml(self.params_path) or {}
        merged = OmegaConf.merge(base, conf_params)
        _apply_runtime_params(merged, runtime)
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
