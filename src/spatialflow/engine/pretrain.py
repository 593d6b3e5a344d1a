"""An ImageNet stand-in for the embedded profile: pretrain a small ResNet once on synthetic images.

The paper starts every row from ImageNet weights with frozen BatchNorm statistics, stem and res2. The tiny
profile cannot download ImageNet, so this module pretrains torchvision's ResNet-18 / 34 on a task of the
same kind: multi-label image classification (which thing shapes and which stuff textures appear) over
synthetic scenes drawn from a seed range that no data split uses. BatchNorm trains normally here, so the
saved running statistics are real ones, as in ImageNet weights.

The result is saved as a plain torchvision ``state_dict`` (no ``fc``), the format of the ImageNet files in
torchvision's cache, and is loaded by :class:`spatialflow.models.backbone.ResNetFPN` through the same code
path (``backbone_weights``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spatialflow.engine.progress import TrainingProgress
from spatialflow.errors import ConfigError

# Scenes for pretraining come from seeds far away from the data splits' (0, split, image) seeds.
PRETRAIN_SEED_OFFSET = 1_000_003


@dataclass(frozen=True)
class PretrainConfig:
    """What decides the pretrained weights (all of it is the stage's identity)."""

    depth: int = 18
    width: int = 64  # ResNet stem / res2 channels (spatialflow.models.resnet): 64 is torchvision's
    iterations: int = 300
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 1e-4
    num_images: int = 2048  # distinct synthetic scenes per preset, rendered once
    seed: int = 0
    cpu_threads: int | None = None  # threads it trains with (the count changes the weights); None: torch's default
    presets: tuple[tuple[str, int, int], ...] = (("shapes-coco", 96, 96), ("shapes-cityscapes", 64, 128))

    def __post_init__(self) -> None:
        if self.depth not in (18, 34, 50, 101):
            raise ConfigError(f"pretrain.depth: must be 18, 34, 50 or 101, got {self.depth!r}")
        for key in ("iterations", "batch_size", "num_images"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"pretrain.{key}: must be an integer >= 1, got {value!r}")
        if not isinstance(self.width, int) or self.width < 8 or self.width % 8:
            raise ConfigError(f"pretrain.width: must be a multiple of 8, got {self.width!r}")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int)
                                             or isinstance(self.cpu_threads, bool) or self.cpu_threads < 1):
            raise ConfigError(f"pretrain.cpu_threads: must be an integer >= 1 or null, got {self.cpu_threads!r}")
        if not self.lr > 0:
            raise ConfigError(f"pretrain.lr: must be > 0, got {self.lr!r}")


def _render_set(preset_name: str, size: tuple[int, int], count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) float images in [0, 1] and (N, classes) multi-hot labels (things, then stuff)."""
    from spatialflow.data.synthetic import PRESETS, render_image

    preset = PRESETS[preset_name]
    num_things = len(preset.things)
    images = np.empty((count, size[0], size[1], 3), dtype=np.uint8)
    labels = np.zeros((count, num_things + len(preset.stuff)), dtype=np.float32)
    for i in range(count):
        image, _, segments = render_image(preset, size, np.random.default_rng([PRETRAIN_SEED_OFFSET + seed, i]))
        images[i] = image
        for segment in segments:
            labels[i, segment["category_id"] - 1] = 1.0  # categories are things 1..K, then stuff K+1..
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(labels)


def build_classifier(depth: int, num_outputs: int, width: int = 64) -> torch.nn.Module:
    """The backbone's ResNet with ordinary (trainable) BatchNorm and a ``num_outputs`` linear layer."""
    from spatialflow.models.resnet import build_resnet

    return build_resnet(depth, width, num_classes=num_outputs)


def pretrain_backbone(cfg: PretrainConfig, out_path: str | os.PathLike) -> dict:
    """Pretrain ResNet-``cfg.depth`` with ``cfg.cpu_threads`` threads and save its backbone ``state_dict``;
    returns a summary."""
    from spatialflow.engine.precision import cpu_threads

    with cpu_threads(cfg.cpu_threads):
        return _pretrain(cfg, out_path)


def _pretrain(cfg: PretrainConfig, out_path: str | os.PathLike) -> dict:
    from spatialflow.models.spatialflow import IMAGENET_MEAN, IMAGENET_STD
    from spatialflow.utils.atomic import atomic_open

    torch.manual_seed(cfg.seed)
    sets = [_render_set(name, (h, w), cfg.num_images, cfg.seed * 100 + k)
            for k, (name, h, w) in enumerate(cfg.presets)]
    widths = [labels.shape[1] for _, labels in sets]
    model = build_classifier(cfg.depth, sum(widths), cfg.width)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay,
                                nesterov=True)
    warmup = max(1, cfg.iterations // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: min(1.0, (it + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * it / cfg.iterations)))
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    offsets = np.cumsum([0, *widths])
    progress = TrainingProgress(cfg.iterations, 0, f"pretrain ResNet-{cfg.depth}")  # a bar, or lines in a log
    for it in range(cfg.iterations):
        k = it % len(sets)  # alternate the presets: one image size per batch
        images, labels = sets[k]
        index = torch.randint(0, images.shape[0], (cfg.batch_size,), generator=generator)
        batch = images[index]
        flip = torch.rand(cfg.batch_size, generator=generator) < 0.5
        batch[flip] = batch[flip].flip(-1)
        logits = model((batch - mean) / std)[:, offsets[k]:offsets[k + 1]]
        loss = F.binary_cross_entropy_with_logits(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        progress.set_postfix({"loss": f"{losses[-1]:.4f}"})
        progress.update()
    progress.close()
    seconds = time.perf_counter() - started
    accuracy = _held_out_accuracy(model, cfg, mean, std, offsets)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    with atomic_open(Path(out_path), "wb") as handle:
        torch.save(state, handle)
    tail = losses[-max(1, len(losses) // 10):]
    return {"depth": cfg.depth, "width": cfg.width, "iterations": cfg.iterations, "seconds": round(seconds, 1),
            "final_loss": round(float(np.mean(tail)), 5), "held_out_label_accuracy": accuracy,
            "weights": str(out_path)}


@torch.no_grad()
def _held_out_accuracy(model: torch.nn.Module, cfg: PretrainConfig, mean, std, offsets) -> float:
    """Per-label accuracy (threshold 0.5) on 128 scenes per preset that training never saw."""
    model.eval()
    correct = total = 0
    for k, (name, h, w) in enumerate(cfg.presets):
        images, labels = _render_set(name, (h, w), 128, cfg.seed * 100 + k + 50)
        logits = model((images - mean) / std)[:, offsets[k]:offsets[k + 1]]
        correct += int(((logits > 0).float() == labels).sum())
        total += labels.numel()
    return round(correct / total, 4)
