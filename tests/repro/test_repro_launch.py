"""A row of a real profile trains under torchrun: the node's multi-process path, run on CPU with gloo."""

from __future__ import annotations

import json

import pytest
import yaml

from spatialflow.data.synthetic import generate_synthetic
from spatialflow.engine.checkpoint import load_checkpoint
from spatialflow_repro.pipelines.train.nodes import _train_with_torchrun
from spatialflow_repro.rows import active_profile, experiment_config, trained_rows


@pytest.mark.slow
def test_a_row_trains_under_torchrun_with_two_processes(tmp_path, repo_root, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    written = generate_synthetic(tmp_path / "data", "shapes-coco", num_train=4, num_val=2, num_test=1, seed=0,
                                 size=(64, 64))
    manifest = {"coco": {"num_things": 8, "num_stuff": 6, "splits": {
        role: {"json": str(written[name].json_path), "png_dir": str(written[name].png_dir),
               "image_dir": str(written[name].image_dir)} for role, name in (("train", "train"), ("val", "val"))}}}
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["profiles"]["tiny"]["training"]["schedule"]["coco"].update(length=2, decay_steps=[1], warmup_iters=1,
                                                                      batch_size=2)
    params["profiles"]["tiny"]["training"]["model"].update(fpn_channels=32, pretrained_backbone=False)
    row = trained_rows(params)["t2_spatialflow"]
    cfg = experiment_config("t2_spatialflow", row, params, manifest, stuff_loss_weight=0.25, seed=0, run_folder="runs")
    cfg["output_dir"] = str(tmp_path / "row")
    summary = _train_with_torchrun(cfg, "t2_spatialflow", row, active_profile(params), 0, gpus=2)
    assert summary["iterations"] == 2 and summary["resumed_from"] == 0
    assert summary["mlflow_run_id"] is not None  # rank 0 tracked the run
    state = load_checkpoint(summary["final_model"])
    assert state["config"]["train"]["batch_size"] == 2  # global batch, one image per process
    assert json.loads((tmp_path / "row" / "train_result.json").read_text()) == summary
