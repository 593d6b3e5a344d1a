"""A toy model + data set that follow SpatialFlow's training contract, for fast engine tests.

Contract: ``model(images: list[(3,H,W)], targets: list[dict])`` in train mode returns a dict of scalar
losses with "total". The engine and tracking tests (and the DDP test's torchrun worker) import these helpers.
"""

from __future__ import annotations

import random

import torch

from spatialflow.engine.config import RUN_KEYS, ExperimentConfig, load_experiment_config


class ToyModel(torch.nn.Module):
    """conv -> global mean -> linear; loss 'fit' = mean squared error per image, 'size' = 0.01 * |w|^2."""

    def __init__(self, nan_at_call: int | None = None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 1)
        self.frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)  # like frozen backbone stages
        self.nan_at_call = nan_at_call
        self.calls = 0

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        self.calls += 1
        preds = torch.stack([self.head(self.conv(img[None]).mean(dim=(2, 3)))[0, 0] for img in images])
        if targets is None:
            return [{"value": p} for p in preds]
        y = torch.stack([t["y"] for t in targets])
        fit = ((preds - y) ** 2).mean()
        if self.nan_at_call is not None and self.calls == self.nan_at_call:
            fit = fit * float("nan")
        size = 0.01 * self.head.weight.pow(2).sum()
        return {"fit": fit, "size": size, "total": fit + size}


class ToyDataset(torch.utils.data.Dataset):
    """``n`` images of varying size (3, 8+i%3, 8) with target y = i / n; optional random flip (python RNG)."""

    def __init__(self, n: int = 8, flip: bool = True) -> None:
        self.n, self.flip = n, flip

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        gen = torch.Generator().manual_seed(1000 + i)
        image = torch.rand(3, 8 + i % 3, 8, generator=gen)
        if self.flip and random.random() < 0.5:
            image = image.flip(-1)
        return image, {"y": torch.tensor(i / self.n)}


def toy_config(output_dir, **train) -> ExperimentConfig:
    """Iteration-based tiny recipe; ``train`` overrides TrainConfig or RunConfig fields. (The model section
must be a valid SpatialFlow config; the toy factories ignore it.)"""
    recipe = {"lr": 0.1, "batch_size": 2, "unit": "iteration", "length": 20, "decay_steps": [15],
              "warmup_iters": 5, "warmup_ratio": 0.1, "checkpoint_every": 10, "log_every": 5, "seed": 3,
              "num_workers": 0, "device": "cpu", "deterministic": True}
    recipe.update(train)
    if "decay_steps" not in train:
        recipe["decay_steps"] = [s for s in recipe["decay_steps"] if s <= recipe["length"]]
    if "warmup_iters" not in train and recipe["unit"] == "iteration":
        recipe["warmup_iters"] = min(recipe["warmup_iters"], recipe["length"])  # never longer than the run
    run = {key: recipe.pop(key) for key in list(recipe) if key in RUN_KEYS}  # run settings: never the weights
    return load_experiment_config({"model": {"preset": "baseline"}, "train": recipe, "run": run,
                                   "output_dir": str(output_dir), "name": "toy"})


def toy_factories(nan_at_call: int | None = None, flip: bool = True) -> dict:
    """Keyword arguments for ``train`` that swap in the toy model and data."""
    return {"model_factory": lambda cfg, categories: ToyModel(nan_at_call),
            "dataset_factory": lambda cfg: ToyDataset(8, flip)}
