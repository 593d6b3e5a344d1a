"""An interrupted `dvc repro` continues where it stopped: `kill -9` of its whole process group in the middle of
a training stage, then `dvc repro` again: no finished stage runs twice, the interrupted row resumes from its
last checkpoint, and its final weights equal those of a run that was never interrupted (same machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers.micro_project import new_micro_project, run
from spatialflow.engine import checkpoint as ckpt

pytestmark = pytest.mark.slow

ROW = "t1_lambda_0_25"  # the first training stage of the micro profile


def _longer_rows(project: Path, env: dict) -> None:
    """40 iterations a row, a checkpoint every 10 (a run setting), so there is a middle to stop in."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    micro = params["profiles"]["micro"]
    micro["training"]["schedule"]["coco"].update(length=40, decay_steps=[32, 38])
    micro["run"].update(checkpoint_every=10, keep_checkpoints=10)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "longer rows"], project, env)


def _weights(project: Path) -> dict:
    return ckpt.load_checkpoint(project / f"data/06_models/{ROW}/seed0/model_final.pt")["model"]


def test_kill_9_in_a_training_stage_then_repro_resumes_and_reruns_nothing_finished(tmp_path, repo_root):
    interrupted = tmp_path / "interrupted"
    env = new_micro_project(interrupted, repo_root, f"sqlite:///{tmp_path / 'a.db'}")
    _longer_rows(interrupted, env)
    checkpoints = interrupted / f"data/runs/{ROW}/seed0/checkpoints"
    proc = subprocess.Popen(["dvc", "repro"], cwd=interrupted, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 900
    while not (checkpoints / "checkpoint_00000020.pt").is_file():  # half-way through the row
        assert proc.poll() is None and time.monotonic() < deadline, "the row never reached iteration 20"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc, kedro and the training process: a machine that goes away
    first = proc.communicate()[0]
    assert f"Running stage 'table1@{ROW}'" in first and "Updating lock file" in first
    finished = [line.split("'")[1] for line in first.splitlines() if line.startswith("Running stage")][:-1]
    assert finished and all(not stage.startswith(("table1@", "train@")) for stage in finished)

    again = run(["dvc", "repro"], interrupted, env)
    for stage in finished:  # every stage that had finished before the kill
        assert f"Running stage '{stage}'" not in again, stage
    assert f"Running stage 'table1@{ROW}'" in again
    result = json.loads((interrupted / f"data/06_models/{ROW}/seed0/train_result.json").read_text())
    assert result["resumed_from"] >= 20 and result["iterations"] == 40  # resumed, not started again

    uninterrupted = tmp_path / "uninterrupted"
    env_b = new_micro_project(uninterrupted, repo_root, f"sqlite:///{tmp_path / 'b.db'}")
    _longer_rows(uninterrupted, env_b)
    run(["dvc", "repro", f"table1@{ROW}"], uninterrupted, env_b)
    a, b = _weights(interrupted), _weights(uninterrupted)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a), "the resumed row differs from the uninterrupted one"
