"""Kedro reads ``params.yaml`` (DVC's parameter file) as its base parameters.

Precedence, lowest first: ``params.yaml`` < ``conf/base/parameters*`` < ``conf/<env>/parameters*`` <
``kedro run --params``. Every level is deep-merged, so ``--params train.lr=0.1`` changes ``train.lr`` and
keeps every sibling key of ``train`` (a plain Kedro resolver on params.yaml would drop them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kedro.config import MissingConfigException, OmegaConfigLoader
from omegaconf import OmegaConf

PARAMS_FILE = "params.yaml"


def _nest_dotted_keys(params: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} (Kedro passes ``--params a.b=1`` either way depending on version)."""
    nested: dict[str, Any] = {}
    for key, value in params.items():
        node = nested
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = OmegaConf.to_container(OmegaConf.merge(node[leaf], _nest_dotted_keys(value)))
        else:
            node[leaf] = _nest_dotted_keys(value) if isinstance(value, dict) else value
    return nested


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
            with self.params_path.open(encoding="utf-8") as handle:
                base = yaml.safe_load(handle) or {}
        merged = OmegaConf.merge(base, conf_params, _nest_dotted_keys(runtime))
        return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]
