"""``scripts/gpu_check.sh --device cpu``: every piece of the GPU check (model bench with and without autocast
for R50 and R101, the torchrun DDP step, the tiny row) runs on the CPU and the JSON summary is sane."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from helpers.paths import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_piece_on_the_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(REPO_ROOT / "scripts" / "gpu_check.sh"), "--device", "cpu", "--size", "32x48", "--repeats", "1",
               "--step-size", "32x32", "--row-iters", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["device"] == "cpu" and summary["ok"] is True
    runs = [(entry["depth"], entry["size"]) for entry in summary["model_bench"]]
    assert runs == [(50, [32, 48]), (50, [32, 48]), (101, [32, 48]), (101, [32, 48])]  # without / with --amp
    for entry in summary["model_bench"]:
        assert entry["amp"] is False  # autocast is CUDA-only: asked for, off on the CPU
        assert entry["spatialflow_images_per_s"] > 0 and entry["retinanet_images_per_s"] > 0
        assert entry["time_ratio"] > 0 and entry["flop_ratio"] > 1  # SpatialFlow does more arithmetic
    best = max(entry["spatialflow_images_per_s"] for entry in summary["model_bench"])
    assert summary["best_spatialflow_images_per_s"] == best
    step = summary["ddp_step"]
    assert step["ok"] and step["backend"] == "gloo" and step["world_size"] == 1 and step["depth"] == 50
    assert step["all_reduce"] == 1.0 and math.isfinite(step["loss"]) and step["size"] == [32, 32]
    row = summary["tiny_row"]
    assert row["iterations"] == 2 and row["losses_finite"] and row["amp"] == "none"
    assert summary["paper_images_per_s_v100"] == 10.0 and summary["target_images_per_s"] == 20.0
