"""The training loop: exact resume after a kill, non-finite loss, fine-tune phase, refusing to overwrite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.paths import REPO_ROOT
from helpers.toy import ToyModel, toy_config, toy_factories
from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine.trainer import Callback, NonFiniteLossError, load_trained_model, train
from spatialflow.errors import ConfigError

# Trains the toy row in a separate process and SIGKILLs it right after iteration 13 was logged
# (checkpoints every 10): what iterations 11-13 did is lost, as in a real crash.
KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from spatialflow.engine.trainer import Callback, train
from helpers.toy import toy_config, toy_factories

class KillAt13(Callback):
    def on_log(self, iteration, metrics):
        if iteration == 13:
            os.kill(os.getpid(), signal.SIGKILL)

train(toy_config(sys.argv[1], log_every=1), [KillAt13()], **toy_factories())
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}


def _assert_states_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            _assert_states_equal(a[key], b[key])
        elif isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_resume_after_kill_gives_identical_weights_and_optimizer(tmp_path):
    torch.set_num_threads(1)
    straight = train(toy_config(tmp_path / "straight", log_every=1), **toy_factories())

    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path / "resumed")], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpt_dir = tmp_path / "resumed" / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(ckpt_dir)] == ["checkpoint_00000010.pt"]

    resumed = train(toy_config(tmp_path / "resumed", log_every=1), resume=True, **toy_factories())
    assert (resumed.start_iteration, resumed.iterations) == (10, 20)

    a = ckpt.load_checkpoint(straight.last_checkpoint)
    b = ckpt.load_checkpoint(resumed.last_checkpoint)
    assert a["iteration"] == b["iteration"] == 20
    _assert_states_equal(a["model"], b["model"])
    _assert_states_equal(a["optimizer"]["state"], b["optimizer"]["state"])  # momentum buffers
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 20
    # The run really moved: the weights differ from those at iteration 10.
    at10 = ckpt.load_checkpoint(ckpt_dir / "checkpoint_00000010.pt")["model"]
    assert not torch.equal(at10["head.weight"], b["model"]["head.weight"])


class _Interrupted(BaseException):
    """Stops a run the way Ctrl-C does (callbacks' ordinary exceptions are only warned about)."""


class _InterruptAt(Callback):
    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_log(self, iteration, metrics):
        if iteration == self.iteration:
            raise _Interrupted


def test_the_number_of_workers_does_not_change_the_weights(tmp_path):
    # The toy data flips images with Python's global RNG, in whichever process loads them.
    torch.set_num_threads(1)
    runs = {workers: train(toy_config(tmp_path / f"w{workers}", num_workers=workers), **toy_factories())
            for workers in (0, 2)}
    a = ckpt.load_checkpoint(runs[0].final_model)["model"]
    b = ckpt.load_checkpoint(runs[2].final_model)["model"]
    _assert_states_equal(a, b)
    unflipped = train(toy_config(tmp_path / "noflip"), **toy_factories(flip=False))  # the flips do matter
    assert not torch.equal(ckpt.load_checkpoint(unflipped.final_model)["model"]["head.weight"], a["head.weight"])


def test_resume_with_workers_mid_epoch_gives_identical_weights(tmp_path):
    # 8 images, batch 2: 4 iterations per epoch; checkpoint 10 is in the middle of the third epoch.
    torch.set_num_threads(1)
    straight = train(toy_config(tmp_path / "straight", num_workers=2, log_every=1), **toy_factories())
    with pytest.raises(_Interrupted):
        train(toy_config(tmp_path / "resumed", num_workers=2, log_every=1), [_InterruptAt(13)], **toy_factories())
    resumed = train(toy_config(tmp_path / "resumed", num_workers=2, log_every=1), resume=True, **toy_factories())
    assert (resumed.start_iteration, resumed.iterations) == (10, 20)
    a = ckpt.load_checkpoint(straight.last_checkpoint)
    b = ckpt.load_checkpoint(resumed.last_checkpoint)
    _assert_states_equal(a["model"], b["model"])
    _assert_states_equal(a["optimizer"]["state"], b["optimizer"]["state"])


def test_a_warmup_longer_than_an_epoch_schedule_is_refused_before_the_run_starts(tmp_path):
    # 8 images, batch 2, 2 epochs: 8 iterations, known only once the data is read.
    cfg = toy_config(tmp_path, unit="epoch", length=2, decay_steps=[], warmup_iters=9)
    with pytest.raises(ConfigError) as info:
        train(cfg, **toy_factories())
    assert str(info.value) == ("train.warmup_iters: 9 is longer than the schedule (2 epochs of 4 iterations = 8 "
                               "iterations)")
    assert not (tmp_path / "identity.json").exists()
    result = train(toy_config(tmp_path, unit="epoch", length=2, decay_steps=[], warmup_iters=8), **toy_factories())
    assert result.iterations == 8


class _Record(Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, cfg):
        self.calls.append(("start", cfg.name))

    def on_log(self, iteration, metrics):
        self.calls.append(("log", iteration, sorted(metrics)))

    def on_checkpoint(self, iteration, path):
        self.calls.append(("checkpoint", iteration, Path(path).name))

    def on_train_end(self, result):
        self.calls.append(("end", result.iterations))


def test_callbacks_see_losses_lr_and_checkpoints(tmp_path):
    rec = _Record()
    train(toy_config(tmp_path, length=10, log_every=5, checkpoint_every=5), [rec], **toy_factories())
    keys = ["epoch", "loss/fit", "loss/size", "loss/total", "lr"]
    assert rec.calls == [
        ("start", "toy"),
        ("log", 5, keys), ("checkpoint", 5, "checkpoint_00000005.pt"),
        ("log", 10, keys), ("checkpoint", 10, "checkpoint_00000010.pt"),
        ("end", 10),
    ]


def test_failing_callback_warns_and_training_goes_on(tmp_path):
    class Broken(Callback):
        def on_log(self, iteration, metrics):
            raise ConnectionError("tracking server down")

    with pytest.warns(UserWarning, match="Broken.on_log failed"):
        result = train(toy_config(tmp_path, length=5), [Broken()], **toy_factories())
    assert result.iterations == 5


def test_non_finite_loss_stops_with_iteration_and_term_and_keeps_checkpoint(tmp_path):
    cfg = toy_config(tmp_path, checkpoint_every=10)
    # forward call 15 = iteration 15 returns a NaN 'fit' term (total is NaN too; the component is named)
    with pytest.raises(NonFiniteLossError, match=r"iteration 15: loss term 'fit' = nan") as info:
        train(cfg, **toy_factories(nan_at_call=15))
    assert (info.value.iteration, info.value.term) == (15, "fit")
    ckpt_dir = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(ckpt_dir)] == ["checkpoint_00000010.pt"]
    state = ckpt.load_checkpoint(ckpt_dir / "checkpoint_00000010.pt")
    assert state["iteration"] == 10
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "model_final.pt").exists()


def test_refuses_to_start_over_existing_checkpoints(tmp_path):
    train(toy_config(tmp_path, length=10), **toy_factories())
    with pytest.raises(ConfigError, match="--resume"):
        train(toy_config(tmp_path, length=10), **toy_factories())


def test_finetune_phase_trains_only_matching_parameters(tmp_path):
    model = ToyModel()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = toy_config(tmp_path, length=4, decay_steps=[], checkpoint_every=3,
                     finetune={"trainable": ["head.*"], "length": 3, "lr": 0.05})
    result = train(cfg, model_factory=lambda c, cats: model, dataset_factory=toy_factories()["dataset_factory"])
    assert result.iterations == 3 + 4
    after_finetune = ckpt.load_checkpoint(tmp_path / "checkpoints" / "checkpoint_00000003.pt")["model"]
    assert torch.equal(after_finetune["conv.weight"], initial["conv.weight"])  # frozen during fine-tuning
    assert not torch.equal(after_finetune["head.weight"], initial["head.weight"])
    final = ckpt.load_checkpoint(result.final_model)["model"]
    assert not torch.equal(final["conv.weight"], initial["conv.weight"])  # then everything trains
    assert torch.equal(final["frozen"], torch.ones(2))  # a parameter frozen by the model stays frozen
    assert not model.frozen.requires_grad


def test_final_model_reloads_with_its_config(tmp_path):
    result = train(toy_config(tmp_path, length=3), **toy_factories())
    model, cfg, categories = load_trained_model(result.final_model, model_factory=lambda c, cats: ToyModel())
    assert cfg.train.length == 3 and categories is None and not model.training
    saved = ckpt.load_checkpoint(result.final_model)["model"]
    assert torch.equal(model.head.weight, saved["head.weight"])


def test_bf16_autocast_runs_on_a_cpu_with_native_bfloat16(tmp_path, monkeypatch):
    from spatialflow.engine import trainer

    monkeypatch.setattr(trainer, "native_cpu_bf16", lambda: True)  # the machine's own kind is not the point
    fp32 = train(toy_config(tmp_path / "fp32", length=4), **toy_factories(flip=False))
    bf16 = train(toy_config(tmp_path / "bf16", length=4, amp="bf16"), **toy_factories(flip=False))
    assert all(torch.isfinite(torch.tensor(v)) for v in bf16.last_losses.values())
    a = ckpt.load_checkpoint(fp32.final_model)["model"]
    b = ckpt.load_checkpoint(bf16.final_model)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast took part: other roundings, other weights


def test_bf16_on_a_cpu_without_native_bfloat16_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    from spatialflow.engine import trainer

    monkeypatch.setattr(trainer, "native_cpu_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"^train.amp: 'bf16' on a CPU without native bfloat16 .* use 'none'"):
        train(toy_config(tmp_path / "run", length=4, amp="bf16"), **toy_factories())
    assert not (tmp_path / "run" / "identity.json").exists()


class _ThreadsSeen(ToyModel):
    """Records the CPU threads torch computes with at every training step."""

    def __init__(self, seen: list[int]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, images, targets=None):
        self.seen.append(torch.get_num_threads())
        return super().forward(images, targets)


def test_a_run_trains_with_its_cpu_threads_whatever_the_callers_and_records_them(tmp_path):
    # The count changes a CPU run's sums, so it is identity: the same on every route that calls train().
    seen: list[int] = []
    factories = {**toy_factories(), "model_factory": lambda cfg, categories: _ThreadsSeen(seen)}
    torch.set_num_threads(1)
    result = train(toy_config(tmp_path / "two", cpu_threads=2, length=4), **factories)
    assert set(seen) == {2} and len(seen) == 4
    assert torch.get_num_threads() == 1  # the caller's count again
    stored = ckpt.load_checkpoint(result.final_model)
    assert stored is not None
    identity = (tmp_path / "two" / "identity.json").read_text()
    assert '"cpu_threads": 2' in identity
    # the same folder with another count is another identity: refused, nothing retrained over it
    with pytest.raises(ConfigError, match=r"another training identity \(train.cpu_threads: 2 -> 1\)"):
        train(toy_config(tmp_path / "two", cpu_threads=1, length=4), resume=True, **factories)
    seen.clear()
    train(toy_config(tmp_path / "default", length=2), **factories)  # null: the process's own count
    assert set(seen) == {1}
