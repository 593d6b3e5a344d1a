"""params.yaml is Kedro's base parameters; overrides deep-merge (params.yaml < conf/<env> < --params)."""

from __future__ import annotations

from pathlib import Path

import yaml
from kedro.framework.cli.utils import _split_params
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from spatialflow_repro.config_loader import ParamsYamlConfigLoader


def _project(tmp_path: Path) -> Path:
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "exp").mkdir(parents=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "profile": "tiny",
        "profiles": {"tiny": {"schedule": {"coco": {"lr": 0.01, "batch_size": 4, "length": 300}}}},
        "seeds": [0],
    }))
    return tmp_path


def test_params_yaml_is_the_base_and_env_files_deep_merge(tmp_path):
    root = _project(tmp_path)
    (root / "conf" / "exp" / "parameters.yml").write_text("profiles: {tiny: {schedule: {coco: {lr: 0.02}}}}\n")
    params = ParamsYamlConfigLoader(str(root / "conf"), env="exp", base_env="base", default_run_env="local")["parameters"]
    assert params["profiles"]["tiny"]["schedule"]["coco"] == {"lr": 0.02, "batch_size": 4, "length": 300}
    assert params["seeds"] == [0] and params["profile"] == "tiny"


def test_nested_runtime_params_keep_sibling_keys(tmp_path):
    root = _project(tmp_path)
    # exactly what `kedro run --params profiles.tiny.schedule.coco.lr=0.5,seeds=...` hands the loader
    runtime = _split_params(None, None, "profiles.tiny.schedule.coco.lr=0.5")
    loader = ParamsYamlConfigLoader(str(root / "conf"), env="exp", runtime_params=runtime,
                                    base_env="base", default_run_env="local")
    schedule = loader["parameters"]["profiles"]["tiny"]["schedule"]["coco"]
    assert schedule == {"lr": 0.5, "batch_size": 4, "length": 300}


def test_dotted_runtime_keys_are_nested_too(tmp_path):
    root = _project(tmp_path)
    loader = ParamsYamlConfigLoader(str(root / "conf"), runtime_params={"profiles.tiny.schedule.coco.length": 10},
                                    base_env="base", default_run_env="local")
    assert loader["parameters"]["profiles"]["tiny"]["schedule"]["coco"] == {"lr": 0.01, "batch_size": 4, "length": 10}


def test_the_real_project_session_sees_params_yaml_and_overrides(repo_root):
    bootstrap_project(repo_root)
    runtime = _split_params(None, None, "profiles.tiny.training.schedule.coco.lr=0.123")
    with KedroSession.create(project_path=repo_root, env="repro", runtime_params=runtime) as session:
        params = session.load_context().params
    on_disk = yaml.safe_load((repo_root / "params.yaml").read_text())
    expected = dict(on_disk["profiles"]["tiny"]["training"]["schedule"]["coco"], lr=0.123)
    assert params["profiles"]["tiny"]["training"]["schedule"]["coco"] == expected
    assert params["rows"] == on_disk["rows"]


def test_runtime_params_dotted_and_nested_merge_into_one_tree(tmp_path):
    root = _project(tmp_path)
    # a dotted key and a nested dict for the same branch: both land, every untouched sibling stays
    runtime = {"profiles.tiny.schedule.coco.lr": 0.3, "profiles": {"tiny": {"schedule": {"coco": {"length": 7}}}},
               "new.key": "x"}
    loader = ParamsYamlConfigLoader(str(root / "conf"), runtime_params=runtime, base_env="base",
                                    default_run_env="local")
    params = loader["parameters"]
    assert params["profiles"]["tiny"]["schedule"]["coco"] == {"lr": 0.3, "batch_size": 4, "length": 7}
    assert params["new"] == {"key": "x"} and params["seeds"] == [0]
