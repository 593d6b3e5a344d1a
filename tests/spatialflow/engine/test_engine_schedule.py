"""The paper's learning-rate recipe: linear warm-up then step decay, checked against hand arithmetic."""

from __future__ import annotations

import pytest
import torch

from helpers.toy import toy_config, toy_factories
from spatialflow.engine.schedule import LrSchedule, build_scheduler
from spatialflow.engine.trainer import Callback, train

# COCO recipe with 100 iterations per epoch: lr 5e-3, warm-up 500 iterations from 0.001,
# /10 at epochs 16 and 19 -> iterations 1600 and 1900.
COCO = LrSchedule(base_lr=5e-3, decay_iters=(1600, 1900), gamma=0.1, warmup_iters=500, warmup_ratio=0.001)


@pytest.mark.parametrize(("iteration", "expected"), [
    (0, 5e-3 * 0.001),                       # 5e-6: the warm-up starts at ratio * lr
    (250, 5e-3 * (0.001 + 0.999 * 0.5)),     # half-way: 0.0025025
    (499, 5e-3 * (0.001 + 0.999 * 499 / 500)),
    (500, 5e-3),                             # warm-up over
    (1599, 5e-3),
    (1600, 5e-4),                            # epoch 16: / 10
    (1899, 5e-4),
    (1900, 5e-5),                            # epoch 19: / 100
    (1999, 5e-5),
])
def test_coco_schedule_values(iteration, expected):
    assert COCO.lr_at(iteration) == pytest.approx(expected, rel=1e-12)


def test_cityscapes_schedule_values():
    # lr 1.25e-2, /10 at epochs 112 and 152 of 176; with 10 iterations per epoch -> 1120, 1520.
    s = LrSchedule(base_lr=1.25e-2, decay_iters=(1120, 1520), warmup_iters=500, warmup_ratio=0.001)
    assert s.lr_at(100) == pytest.approx(1.25e-2 * (0.001 + 0.999 * 0.2))  # 0.00250975
    assert s.lr_at(1119) == pytest.approx(1.25e-2)
    assert s.lr_at(1120) == pytest.approx(1.25e-3)
    assert s.lr_at(1520) == pytest.approx(1.25e-4)


def test_finetune_phase_then_normal_schedule_restarts():
    # 4 fine-tune iterations at 2.5e-3, then warm-up 2 iterations from 0.5 of 1e-2.
    s = LrSchedule(base_lr=1e-2, decay_iters=(6,), warmup_iters=2, warmup_ratio=0.5,
                   finetune_iters=4, finetune_lr=2.5e-3)
    got = [s.lr_at(i) for i in range(12)]
    expected = [2.5e-3] * 4 + [1e-2 * 0.5, 1e-2 * 0.75, 1e-2, 1e-2, 1e-2, 1e-2, 1e-3, 1e-3]
    assert got == pytest.approx(expected)


def test_lambda_lr_wrapper_follows_lr_at():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=123.0)  # overwritten by build_scheduler
    s = LrSchedule(base_lr=0.1, decay_iters=(7,), warmup_iters=4, warmup_ratio=0.2)
    sched = build_scheduler(opt, s)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # 0.1*(0.2 + 0.8*i/4) for i<4: 0.02, 0.04, 0.06, 0.08; then 0.1 until 7; then 0.01
    assert seen == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])


class _Record(Callback):
    def __init__(self):
        self.logs = []

    def on_log(self, iteration, metrics):
        self.logs.append((iteration, metrics))


def test_trainer_converts_epochs_to_iterations(tmp_path):
    # 8 toy images, batch 2 -> 4 iterations per epoch; 3 epochs = 12 iterations; decay at epoch 2 = iteration 8.
    cfg = toy_config(tmp_path / "run", unit="epoch", length=3, decay_steps=[2], warmup_iters=2,
                     warmup_ratio=0.5, lr=0.1, log_every=1, checkpoint_every=100)
    rec = _Record()
    result = train(cfg, [rec], **toy_factories())
    assert result.iterations == 12
    lrs = [m["lr"] for _, m in rec.logs]  # logged lr = the one used by that iteration
    assert lrs == pytest.approx([0.05, 0.075] + [0.1] * 6 + [0.01] * 4)
    assert [m["epoch"] for _, m in rec.logs][3] == 1.0  # iteration 4 ends epoch 1
