"""Checkpoints: atomic save, safe (weights_only) load, a digest of everything, fallback past a truncated
file, pruning that never removes the last good checkpoint, a full disk."""

from __future__ import annotations

import contextlib
import errno

import pytest
import torch

from helpers.toy import ToyModel, toy_config, toy_factories
from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine.trainer import train
from spatialflow.errors import CheckpointError


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


def test_pickled_code_is_refused_in_one_line(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(info.value) == (f"{path}: refused: it holds Python objects (test_engine_checkpoint.Payload) that "
                               "only an unsafe load would construct or run; checkpoints are loaded with "
                               "weights_only=True and never unpickled")


def _resave_without_new_digest(path, change) -> None:
    """Edit a saved checkpoint the way a bit flip or a hand edit would: the stored sha256 stays as it was."""
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.update(iteration=s["iteration"] + 5), "corrupt checkpoint (its content does not match the "
                                                        "stored sha256)"),
    (lambda s: s["config"].update(name="y"), "corrupt checkpoint (its content does not match the stored sha256)"),
    (lambda s: s["model"]["w"].zero_(), "corrupt checkpoint (its content does not match the stored sha256)"),
    (lambda s: (s.pop("sha256"), s["model"]["w"].zero_()), "has no sha256 digest (not written by spatialflow, or "
                                                          "edited); refused"),
    (lambda s: s.update(format=1), "checkpoint format 1 is older than this code's (2): its digest does not "
                                   "cover every value; retrain it"),
])
def test_the_digest_covers_every_value_and_is_required(tmp_path, change, message):
    path = ckpt.checkpoint_path(tmp_path, 10)
    ckpt.save_checkpoint(path, _state(10))
    assert ckpt.load_checkpoint(path)["iteration"] == 10
    _resave_without_new_digest(path, change)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_checkpoint(path)
    assert str(info.value) == f"{path}: {message}"


def test_the_digest_tells_plain_values_apart():
    base = {"iteration": 3, "lr": [0.1], "flag": True, "none": None, "name": "a"}
    for key, other in (("iteration", 4), ("lr", [0.1000001]), ("flag", 1), ("none", 0), ("name", "b"),
                       ("lr", (0.1,))):
        assert ckpt.state_digest(base) != ckpt.state_digest({**base, key: other}), key
    assert ckpt.state_digest(base) == ckpt.state_digest(dict(reversed(base.items())))


def test_a_device_or_pipe_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match=r"^/dev/zero: not a regular file \(a device, pipe or socket\); "
                                              r"expected a checkpoint file$"):
        ckpt.load_checkpoint("/dev/zero")
    with pytest.raises(CheckpointError, match=r"not a regular file \(a folder\)"):
        ckpt.load_checkpoint(tmp_path)


def test_prune_never_removes_the_last_checkpoint_that_loads(tmp_path):
    # 6 is good, 9 was truncated; then (checkpoint_every changed to 4) 8 is written and keep=1 prunes.
    for i in (6, 9):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, i), _state(i))
    truncated = ckpt.checkpoint_path(tmp_path, 9)
    truncated.write_bytes(truncated.read_bytes()[:100])
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 8), _state(8))
    with pytest.warns(UserWarning, match=r"checkpoint_00000009\.pt: does not load; moved it aside to "
                                         r"checkpoint_00000009\.pt\.unreadable-\d{8}T\d+Z \(not deleted\)"):
        ckpt.prune_checkpoints(tmp_path, keep=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint_00000008.pt"]
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 8))["iteration"] == 8
    moved = list(tmp_path.glob("checkpoint_00000009.pt.unreadable-*"))
    assert len(moved) == 1 and len(moved[0].read_bytes()) == 100  # kept as it was


def test_prune_touches_nothing_when_no_checkpoint_loads(tmp_path):
    for i in (3, 6):
        ckpt.checkpoint_path(tmp_path, i).write_bytes(b"garbage")
    ckpt.prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_00000003.pt", "checkpoint_00000006.pt"]


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


def test_resume_with_keep_one_past_corrupt_newest_keeps_a_good_checkpoint_and_matches_straight_run(tmp_path):
    torch.set_num_threads(1)
    straight = train(toy_config(tmp_path / "a", checkpoint_every=5, keep_checkpoints=10), **toy_factories())
    train(toy_config(tmp_path / "b", checkpoint_every=5, keep_checkpoints=10), **toy_factories())
    ckpt_dir = tmp_path / "b" / "checkpoints"
    for i in (15, 20):  # the newest two truncated, the oldest removed, the final model lost
        path = ckpt.checkpoint_path(ckpt_dir, i)
        path.write_bytes(path.read_bytes()[:200])
    ckpt.checkpoint_path(ckpt_dir, 5).unlink()
    (tmp_path / "b" / "model_final.pt").unlink()
    # Resumed with other run settings: keep one checkpoint, one every 4 iterations (12, 16, 20).
    with pytest.warns(UserWarning, match="moved it aside"):
        resumed = train(toy_config(tmp_path / "b", checkpoint_every=4, keep_checkpoints=1), resume=True,
                        **toy_factories())
    assert (resumed.start_iteration, resumed.last_checkpoint.name) == (10, "checkpoint_00000020.pt")
    assert [p.name for p in ckpt.list_checkpoints(ckpt_dir)] == ["checkpoint_00000020.pt"]
    assert len(list(ckpt_dir.glob("checkpoint_*.pt.unreadable-*"))) == 2  # moved aside, not deleted
    a = ckpt.load_checkpoint(straight.final_model)["model"]
    b = ckpt.load_checkpoint(resumed.final_model)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_a_checkpoint_of_another_model_is_one_line(tmp_path):
    train(toy_config(tmp_path, length=10, checkpoint_every=5), **toy_factories())
    other = ToyModel()
    other.conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # 8 channels instead of 4
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path / "checkpoints", 10))
    state["model"] = other.state_dict()
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path / "checkpoints", 10), state)
    with pytest.raises(CheckpointError) as info:
        train(toy_config(tmp_path, length=10, checkpoint_every=5), resume=True, **toy_factories())
    assert str(info.value) == (f"{ckpt.checkpoint_path(tmp_path / 'checkpoints', 10)}: holds another model than "
                               "the config builds ('conv.weight' is (8, 3, 3, 3) there, (4, 3, 3, 3) in this "
                               "model)")


class _DiskFullAfter:
    """A file whose writes fail with ENOSPC once ``limit`` bytes were written (the disk filled up)."""

    def __init__(self, handle, limit: int) -> None:
        self.handle, self.left = handle, limit

    def write(self, data) -> int:
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    real_open = ckpt.atomic_open

    @contextlib.contextmanager
    def disk_full_at_10(path, mode="w", **kwargs):
        with real_open(path, mode, **kwargs) as handle:
            yield _DiskFullAfter(handle, 1000) if path.name == "checkpoint_00000010.pt" else handle

    monkeypatch.setattr(ckpt, "atomic_open", disk_full_at_10)
    with pytest.raises(CheckpointError) as info:
        train(toy_config(tmp_path, checkpoint_every=5), **toy_factories())
    ckpt_dir = tmp_path / "checkpoints"
    assert str(info.value) == (f"{ckpt_dir / 'checkpoint_00000010.pt'}: cannot write the checkpoint: no space "
                               "left on device; the checkpoints already written are left as they were")
    assert [p.name for p in ckpt_dir.iterdir()] == ["checkpoint_00000005.pt"]  # no half file, no temp file
    assert ckpt.load_checkpoint(ckpt_dir / "checkpoint_00000005.pt")["iteration"] == 5


def test_a_full_disk_over_an_existing_checkpoint_leaves_it_intact(tmp_path, monkeypatch):
    path = ckpt.checkpoint_path(tmp_path, 10)
    ckpt.save_checkpoint(path, _state(10))
    before = path.read_bytes()
    real_open = ckpt.atomic_open

    @contextlib.contextmanager
    def full_disk(target, mode="w", **kwargs):
        with real_open(target, mode, **kwargs) as handle:
            yield _DiskFullAfter(handle, 10)

    monkeypatch.setattr(ckpt, "atomic_open", full_disk)
    with pytest.raises(CheckpointError, match=r"checkpoint_00000010\.pt: cannot write the checkpoint: no space "
                                              r"left on device"):
        ckpt.save_checkpoint(path, _state(11))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


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
