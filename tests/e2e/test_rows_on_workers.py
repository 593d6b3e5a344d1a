"""Rows on several workers, collected through DVC's run-cache (the micro profile, real dvc / kedro / git).

One machine: ``python -m spatialflow_repro rows --jobs 2`` trains the two Table 2 rows at once in worktrees;
the head's ``dvc repro`` restores both from the run-cache. A cluster: three clones (the head and one per
row, cloned by the jobs that submitit's local executor starts), one local DVC remote and one ``mlflow
server`` on 127.0.0.1. A worker that is not at the head's state refuses before training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.micro_project import new_micro_project, run
from helpers.mlflow_server import Server

pytestmark = pytest.mark.slow

ROWS = ("t2_baseline", "t2_spatialflow")


def _new_micro_project(base: Path, repo_root: Path, tracking_uri: str) -> tuple[Path, dict]:
    project = base / "head"
    return project, new_micro_project(project, repo_root, tracking_uri)


def _rows(project: Path, env: dict, *args: str) -> str:
    return run([sys.executable, "-m", "spatialflow_repro", "rows", *args], project, env)


def test_two_rows_at_once_on_one_machine_then_dvc_repro_restores_them(tmp_path, repo_root):
    project, env = _new_micro_project(tmp_path, repo_root, f"sqlite:///{tmp_path / 'mlflow.db'}")
    output = _rows(project, env, "--jobs", "2")
    lines = output.splitlines()
    started = {row: next(i for i, line in enumerate(lines) if line.startswith("to a worker at ")
                         and line.endswith(f": train@{row}")) for row in ROWS}
    finished = {row: lines.index(f"  train@{row}: trained") for row in ROWS}
    assert max(started.values()) < min(finished.values())  # the two rows trained at once
    assert "training on CPU(s) 0, log" in output and "training on CPU(s) 1, log" in output  # a core each
    for row in ROWS:  # the head trained nothing: DVC restored the workers' rows
        assert f"Stage 'train@{row}' is cached - skipping run, checking out outputs" in output, output[-4000:]
        assert f"Running stage 'train@{row}'" not in output
        assert (project / f"data/06_models/{row}/seed0/model_final.pt").is_file()
        assert (project / f"data/runs/{row}/seed0/checkpoints").is_dir()  # the working area stays (resume)
        assert (project / f"data/08_reporting/metrics/val/{row}.json").is_file()
    assert not list((project / ".dvc/tmp/rows").iterdir())  # the worktrees are gone, their dvc.lock too
    again = run(["dvc", "repro"], project, env)
    assert "Running stage" not in again, again
    shown = run(["dvc", "metrics", "show"], project, env)
    for row in ROWS:
        assert f"data/08_reporting/metrics/val/{row}.json" in shown
    assert "summary.pq_th" in shown and "summary.pq_st" in shown


def test_a_worker_that_is_not_at_the_heads_state_refuses_in_one_line(tmp_path, repo_root):
    project, env = _new_micro_project(tmp_path, repo_root, f"sqlite:///{tmp_path / 'mlflow.db'}")
    head = run(["git", "rev-parse", "HEAD"], project, env).strip()

    def worker(commit: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "spatialflow_repro", "train-stage", "train@t2_baseline",
                               "--commit", commit], cwd=project, env=env, capture_output=True, text=True)

    other = worker("0" * 40)
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert f"the head's is 000000000000" in other.stderr and "Traceback" not in other.stderr
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("num_images: 4", "num_images: 3"))
    edited = worker(head)
    assert edited.returncode == 2 and "tracked files differ from the head's commit (params.yaml)" in edited.stderr
    assert not (project / "data/06_models/t2_baseline").exists()  # nothing trained


def test_rows_on_a_cluster_of_clones_share_one_remote_and_one_mlflow_server(tmp_path, repo_root):
    server = Server(tmp_path)
    server.start()
    try:
        project, env = _new_micro_project(tmp_path, repo_root, server.uri)
        workdir = tmp_path / "nodes"
        workdir.mkdir()
        output = _rows(project, env, "--submitit", "--jobs", "2", "--timeout-min", "30", "--workdir", str(workdir),
                       "--logs", str(tmp_path / "submitit" / "%j"))
        assert "(local)" in output  # submitit's local executor: no SLURM here
        clones = {row: workdir / f"train-{row}" for row in ROWS}
        for row, clone in clones.items():
            assert (clone / f"data/06_models/{row}/seed0/model_final.pt").is_file()  # each job its own clone
            assert f"Stage 'train@{row}' is cached - skipping run, checking out outputs" in output
            assert f"Running stage 'train@{row}'" not in output
            # the head's row is the worker's, bit for bit (the same output hash in both dvc.lock files)
            worker_lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"][f"train@{row}"]
            head_lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"][f"train@{row}"]
            assert worker_lock["outs"] == head_lock["outs"]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.uri)
        experiment = client.get_experiment_by_name("spatialflow-micro")
        runs = client.search_runs([experiment.experiment_id])
        by_row = {r.data.tags.get("row"): r for r in runs if r.data.tags.get("row")}
        assert set(ROWS) <= set(by_row)  # the workers logged to the one server
        parent = {r.info.run_id for r in runs if r.info.run_name == "table2"}
        assert {by_row[row].data.tags["mlflow.parentRunId"] for row in ROWS} <= parent
        table2 = (project / "data/08_reporting/tables/table2.md").read_text()
        for row in ROWS:
            metrics = json.loads((project / f"data/08_reporting/metrics/val/{row}.json").read_text())
            assert f"{metrics['summary']['pq']:.1f}" in table2
    finally:
        server.stop()
