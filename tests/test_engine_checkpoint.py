"""Checkpoints: atomic save, safe (weights_only) load, fallback past a truncated file, pruning."""

from __future__ import annotations

import pytest
import torch

from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine.trainer import train
from spatialflow.errors import CheckpointError
from test_engine_toy import toy_config, toy_factories


def _state(i: int) -> dict:
    return {"iteration": i, "model": {"w": torch.full((2,), float(i))}, "config": {"name": "x"}}


def test_save_list_latest_and_prune(tmp_path):
    for i in (5, 10, 15, 20):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, i), _state(i))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [
        "checkpoint_00000005.pt", "checkpoint_00000010.pt", "checkpoint_00000015.pt", "checkpoint_00000020.pt"]
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint_00000015.pt", "checkpoint_00000020.pt"]
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint_00000020.pt"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp files left behind


def test_truncated_latest_falls_back_to_previous_with_warning(tmp_path):
    for i in (10, 20):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, i), _state(i))
    bad = ckpt.checkpoint_path(tmp_path, 20)
    bad.write_bytes(bad.read_bytes()[:100])  # truncated upload / disk full
    with pytest.raises(CheckpointError, match=r"checkpoint_00000020\.pt: unreadable checkpoint"):
        ckpt.load_checkpoint(bad)
    with pytest.warns(UserWarning, match=r"checkpoint_00000020\.pt.*falling back"):
        path, state = ckpt.load_latest_checkpoint(tmp_path)
    assert path.name == "checkpoint_00000010.pt"
    assert state["iteration"] == 10 and torch.equal(state["model"]["w"], torch.full((2,), 10.0))


def test_no_readable_checkpoint_is_an_error_naming_the_files(tmp_path):
    ckpt.checkpoint_path(tmp_path, 1).write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="checkpoint_00000001.pt"):
        ckpt.load_latest_checkpoint(tmp_path)
    assert ckpt.load_latest_checkpoint(tmp_path / "empty") is None


class Payload:  # a class that torch.load(weights_only=False) would instantiate from the pickle
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="evil.pt: unreadable checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = ckpt.capture_rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(1).item())
    ckpt.restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == first


def test_load_model_weights_skips_mismatched_class_layers(tmp_path):
    src = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 80))  # e.g. 80 COCO classes
    dst = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 8))  # 8 Cityscapes things
    ckpt.save_checkpoint(tmp_path / "coco.pt", {"model": src.state_dict()})
    skipped = ckpt.load_model_weights(dst, tmp_path / "coco.pt")
    assert skipped == ["1.bias", "1.weight"]
    assert torch.equal(dst[0].weight, src[0].weight)


def test_resume_from_truncated_latest_uses_previous_and_matches_straight_run(tmp_path):
    torch.set_num_threads(1)
    straight = train(toy_config(tmp_path / "a"), **toy_factories())
    train(toy_config(tmp_path / "b"), **toy_factories())
    latest = tmp_path / "b" / "checkpoints" / "checkpoint_00000020.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="checkpoint_00000020.pt"):
        resumed = train(toy_config(tmp_path / "b"), resume=True, **toy_factories())
    assert resumed.start_iteration == 10
    a = ckpt.load_checkpoint(straight.final_model)["model"]
    b = ckpt.load_checkpoint(resumed.final_model)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
