"""The micro profile: a copy of the project whose params.yaml runs a few rows for a few iterations, for the
tests that run the real pipeline (`dvc repro`, `kedro run`) in a temporary folder."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TIMEOUT = 1200


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    """Output (stdout + stderr) of ``cmd``; it must succeed within TIMEOUT seconds."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-6000:]}"
    return output


def micro_params(params: dict) -> dict:
    """``params`` (params.yaml) with the micro profile added and chosen, and its small grid of rows."""
    params = copy.deepcopy(params)
    micro = copy.deepcopy(params["profiles"]["tiny"])
    micro["description"] = "micro: the end-to-end test's profile (a few iterations)"
    micro["tables"] = [1, 2, 5]
    micro["datasets"]["coco"].update(image_size=[64, 64], num_train=6, num_val=3, num_test=3)
    micro["datasets"]["cityscapes"].update(image_size=[64, 128], num_train=2, num_val=2, num_test=2)
    training = micro["training"]
    training["backbones"] = {"R50": 18, "R101": 18}
    training["sizes"] = {"600": [48, 64], "800": [64, 64], "cityscapes": [64, 128]}
    training["model"].update(fpn_channels=32, stuff_channels=32, mask_channels=32)
    training["row_overrides"] = {}  # the micro grid has none of the overridden rows (Table 6's)
    training["schedule"]["coco"].update(length=4, decay_steps=[3], warmup_iters=1, batch_size=2)
    micro["inference"]["tta"]["coco"] = {"scales": [[48, 64], [64, 80]], "flip": True}
    micro["run"].update(checkpoint_every=2, log_every=1)
    params["profiles"]["micro"] = micro
    params["profile"] = "micro"
    params["seeds"] = {"values": [0], "rows": []}
    params["pretrain_backbones"] = {"resnet18": {"depth": 18, "iterations": 2, "batch_size": 4, "lr": 0.01,
                                                 "num_images": 8, "seed": 0}}
    params["search_rows"] = {"t1_lambda_0_25": params["search_rows"]["t1_lambda_0_25"]}
    params["rows"] = {name: params["rows"][name] for name in ("t2_baseline", "t2_spatialflow")}
    params["pretrained_rows"] = {}
    params["testdev_rows"] = {"t2_spatialflow": {"tables": [5], "tta": "coco"}}
    return params


def copy_project(repo_root: Path, dest: Path) -> None:
    """What a clone of the working tree holds, minus generated data (the test regenerates it)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo_root,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in listed:
        if rel == "dvc.lock" or (rel.startswith("data/") and not rel.endswith(".gitkeep")):
            continue
        src = repo_root / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def new_micro_project(project: Path, repo_root: Path, tracking_uri: str) -> dict:
    """A git repository at ``project`` holding the working tree with the micro params (nothing run yet),
    its DVC remote a folder next to it; returns the environment its commands run with."""
    copy_project(repo_root, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(micro_params(params), sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg",
           "MLFLOW_TRACKING_URI": tracking_uri, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    run(["git", "init", "-q", "-b", "main"], project, env)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(project.parent / "remote")], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "micro project"], project, env)
    return env
