"""The paper's learning-rate schedule: linear warm-up, then step decay (x gamma at each milestone).

Everything is counted in iterations here; the trainer converts epochs to iterations. An optional
fine-tuning phase (Table 7 "-COCO") runs first at a constant rate; the normal schedule then starts
from iteration 0 again, warm-up included.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LrSchedule:
    """Learning rate as a pure function of the iteration (0-based index of the step about to run)."""

    base_lr: float
    decay_iters: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    finetune_iters: int = 0
    finetune_lr: float = 0.0

    def lr_at(self, iteration: int) -> float:
        """Fine-tune rate during the first ``finetune_iters``; then
        base_lr * warm-up factor * gamma ** (milestones passed), with the warm-up factor
        ratio + (1 - ratio) * i / warmup_iters for i < warmup_iters (mmdetection's 'linear' warm-up)."""
        if iteration < self.finetune_iters:
            return self.finetune_lr
        i = iteration - self.finetune_iters
        lr = self.base_lr * self.gamma ** bisect.bisect_right(self.decay_iters, i)
        if i < self.warmup_iters:
            lr *= self.warmup_ratio + (1.0 - self.warmup_ratio) * i / self.warmup_iters
        return lr


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LrSchedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration; every param group's lr must equal ``schedule.base_lr``."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.base_lr
        group["initial_lr"] = schedule.base_lr

    def factor(iteration: int) -> float:
        return schedule.lr_at(iteration) / schedule.base_lr

    # A plain function, so the scheduler's state_dict holds no objects (weights_only loading).
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
