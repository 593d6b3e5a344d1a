"""The training loop of one row: the paper's recipe, resumable, multi-process, with metric callbacks.

``train(cfg, callbacks, resume)`` runs in one process or under ``torchrun`` (one process per GPU).
The model contract: ``model(images, targets)`` in train mode returns a dict of scalar losses including
``"total"`` (the one that is back-propagated). Data order is a pure function of (seed, epoch) and each
sample's random augmentation a function of (seed, epoch, sample index) (:class:`EpochSamples`), so a resumed
run sees exactly the batches the uninterrupted one would have seen, whatever the number of data-loader
workers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from spatialflow.data.dataset import EpochSamples
from spatialflow.engine import checkpoint as ckpt
from spatialflow.engine import run_dir
from spatialflow.engine.config import ExperimentConfig, TrainConfig, experiment_to_yaml, training_identity
from spatialflow.engine.distributed import (DistInfo, all_gather_objects, all_reduce_mean, any_process,
                                            init_distributed)
from spatialflow.engine.precision import cpu_threads, native_cpu_bf16, runs_on_cuda
from spatialflow.engine.progress import TrainingProgress
from spatialflow.engine.schedule import LrSchedule, build_scheduler
from spatialflow.errors import CheckpointError, ConfigError, SpatialFlowError
from spatialflow.utils.atomic import atomic_write_text

ModelFactory = Callable[[ExperimentConfig, list[dict] | None], torch.nn.Module]
DatasetFactory = Callable[[ExperimentConfig], Dataset]


class NonFiniteLossError(SpatialFlowError):
    """A loss became NaN or infinite; training stops before the weights are touched."""

    def __init__(self, iteration: int, term: str, value: float) -> None:
        self.iteration, self.term, self.value = iteration, term, value
        super().__init__(f"non-finite loss at iteration {iteration}: loss term '{term}' = {value}; "
                         "the last checkpoint is left as it was")


class Callback:
    """Hooks called on the main process only. Override what you need; exceptions are caught and warned."""

    def on_train_start(self, cfg: ExperimentConfig) -> None:
        pass

    def on_log(self, iteration: int, metrics: dict[str, float]) -> None:
        pass

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        pass

    def on_train_end(self, result: TrainResult) -> None:
        pass


@dataclass
class TrainResult:
    output_dir: Path
    final_model: Path  # model_final.pt: weights + config + categories (what evaluation loads)
    last_checkpoint: Path
    iterations: int  # total iterations done (including those before a resume)
    start_iteration: int  # 0, or where a resume started
    seconds: float  # wall time of this process's training loop
    last_losses: dict[str, float] = field(default_factory=dict)

    @property
    def iterations_per_second(self) -> float:
        return (self.iterations - self.start_iteration) / self.seconds if self.seconds > 0 else 0.0


# ------------------------------------------------------------------------------------------ building


def collate_lists(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Images and targets as lists (sizes differ; the model pads them into one batch)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def build_transforms(cfg: ExperimentConfig, train: bool):
    """The data transforms of the config: resize (+ flip, + scale-crop when training)."""
    from spatialflow.data import transforms as T

    t = cfg.data.transforms
    steps: list = []
    if train and t.scale_crop:
        steps.append(T.RandomScaleCrop(tuple(t.scale_crop.scale), tuple(t.scale_crop.crop)))
    elif train and t.min_size_range is not None:
        steps.append(T.ResizeShorterSideRange(tuple(t.min_size_range), t.max_size))
    else:
        short = t.min_size if isinstance(t.min_size, int) else tuple(t.min_size)
        if not train and not isinstance(short, int):
            short = max(short)
        steps.append(T.ResizeShorterSide(short, t.max_size))
    if train and t.flip > 0:
        steps.append(T.RandomHorizontalFlip(t.flip))
    return T.Compose(steps)


def default_dataset(cfg: ExperimentConfig) -> Dataset:
    from spatialflow.data.dataset import PanopticDataset

    split = cfg.data.train
    if split is None or split.png_dir is None:
        raise ConfigError("data.train: a training split needs json, png_dir and image_dir")
    return PanopticDataset(split.json, split.png_dir, split.image_dir, build_transforms(cfg, train=True))


def default_model(cfg: ExperimentConfig, categories: list[dict] | None, *, pretrained: bool = True
                  ) -> torch.nn.Module:
    """SpatialFlow from ``cfg.model`` (preset + overrides); class counts come from the data's categories.

    ``pretrained=False`` skips reading the pretrained backbone file (the weights are loaded afterwards).
    """
    from spatialflow.models.config import model_config
    from spatialflow.models.spatialflow import SpatialFlow

    overrides = {k: v for k, v in cfg.model.items() if k != "preset"}
    if not pretrained:
        overrides["pretrained_backbone"] = False
    if categories is not None:
        counts = {"num_things": sum(1 for c in categories if c["isthing"]),
                  "num_stuff": sum(1 for c in categories if not c["isthing"])}
        for key, value in counts.items():
            if key in overrides and overrides[key] != value:
                raise ConfigError(f"model.{key} = {overrides[key]} but the training data has {value}")
            overrides[key] = value
    return SpatialFlow(model_config(cfg.model["preset"], **overrides))


def build_optimizer(params: list[torch.nn.Parameter], t: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's recipe) or AdamW (``momentum`` is then beta1)."""
    # foreach: one multi-tensor kernel per step instead of a Python loop over ~250 parameters (the loop
    # was a quarter of a tiny CPU step); the same arithmetic.
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, betas=(t.momentum, 0.999), weight_decay=t.weight_decay,
                                 fused=True)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, foreach=True)


def dataset_categories(dataset: Dataset) -> list[dict] | None:
    """The COCO ``categories`` list of a PanopticDataset (None for datasets without one)."""
    cats = getattr(dataset, "categories", None)
    return None if cats is None else [dict(c) for c in cats.categories]


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _amp_on(amp: str, device: torch.device) -> str:
    """The autocast the run uses on ``device``: as asked on CUDA; bfloat16 on a CPU that has it natively
    (refused, in one line, on one that has not: the identity must say what trained); fp16 only on CUDA."""
    if device.type == "cuda" or amp == "none":
        return amp
    if amp == "bf16":
        if not native_cpu_bf16():
            raise ConfigError("train.amp: 'bf16' on a CPU without native bfloat16 (avx512_bf16 or AMX) runs "
                              "20-30x slower than float32; use 'none' on this machine")
        return amp
    return "none"


def _autocast(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _epoch_indices(size: int, epoch: int, seed: int, dist_info: DistInfo) -> list[int]:
    """This process's sample order for ``epoch``: DistributedSampler's shuffle, a function of (seed, epoch)."""
    sampler = DistributedSampler(range(size), num_replicas=dist_info.world_size, rank=dist_info.rank,
                                 shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def _set_trainable(model: torch.nn.Module, patterns: Sequence[str] | None, base: dict[str, bool]) -> None:
    """Fine-tune phase: only parameters matching ``patterns`` train. ``None`` restores ``base``."""
    for name, param in model.named_parameters():
        if patterns is None:
            param.requires_grad_(base[name])
        else:
            param.requires_grad_(base[name] and any(fnmatch.fnmatch(name, p) for p in patterns))


# -------------------------------------------------------------------------------------------- train


def train(
    cfg: ExperimentConfig,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    *,
    replace: bool = False,
    model_factory: ModelFactory | None = None,
    dataset_factory: DatasetFactory | None = None,
    collate_fn: Callable | None = None,
    progress: str = "auto",
) -> TrainResult:
    """Train one row. ``resume`` continues from the newest readable checkpoint in ``output_dir``.

    ``output_dir`` is locked for the whole run. If it holds a run of another training identity, training
    refuses (ConfigError), or with ``replace`` moves that folder aside first (nothing is ever deleted).
    Factories replace the default SpatialFlow model / PanopticDataset (tests, other models). ``progress``:
    a bar on a terminal, lines in a log file (:mod:`spatialflow.engine.progress`).
    """
    output_dir = Path(cfg.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 owns the folder, the others follow it
        with _threads_of(cfg):
            return _train(cfg, callbacks, resume, model_factory, dataset_factory, collate_fn, progress=progress)
    identity = run_dir.run_identity(cfg)
    with run_dir.lock_run_dir(output_dir):
        moved = run_dir.check_identity(output_dir, identity, replace=replace)
    if moved is not None:
        warnings.warn(f"{output_dir}: held a run of another training identity; moved it to {moved}", stacklevel=2)
    with run_dir.lock_run_dir(output_dir), _threads_of(cfg):  # a fresh folder when the old one was moved aside
        return _train(cfg, callbacks, resume, model_factory, dataset_factory, collate_fn, identity, progress)


def _threads_of(cfg: ExperimentConfig):
    """``train.cpu_threads`` for a run on a CPU (identity: the count changes the sums); nothing on CUDA."""
    return cpu_threads(None if runs_on_cuda(cfg.run.device) else cfg.train.cpu_threads)


def _train(cfg: ExperimentConfig, callbacks: Sequence[Callback], resume: bool,
           model_factory: ModelFactory | None, dataset_factory: DatasetFactory | None,
           collate_fn: Callable | None, identity: dict | None = None, progress: str = "auto") -> TrainResult:
    """Build and check everything (device, data, model, init weights, schedule, resume state), then record
    ``identity`` in the folder (main process) and train: a start that fails leaves no identity behind."""
    t, r = cfg.train, cfg.run
    dist_info = init_distributed(r.device)
    device = dist_info.device
    if t.batch_size % dist_info.world_size:
        raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by the {dist_info.world_size} "
                          "processes")
    per_process_batch = t.batch_size // dist_info.world_size
    amp = _amp_on(t.amp, device)
    if amp != t.amp and dist_info.is_main:
        warnings.warn(f"train.amp={t.amp!r} needs CUDA; training in float32 on {device}", stacklevel=2)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False

    output_dir = Path(cfg.output_dir)
    ckpt_dir = output_dir / "checkpoints"
    if not resume and ckpt.list_checkpoints(ckpt_dir):
        raise ConfigError(f"{ckpt_dir}: holds checkpoints of an earlier run; resume it (--resume) or choose "
                          "another output_dir")

    _seed_everything(t.seed + dist_info.rank)
    dataset = (dataset_factory or default_dataset)(cfg)
    if len(dataset) == 0:
        raise ConfigError("data.train: the training split is empty")
    categories = dataset_categories(dataset)
    model = (model_factory or default_model)(cfg, categories).to(device)
    base_trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    if t.init_checkpoint:
        skipped = ckpt.load_model_weights(model, t.init_checkpoint)
        if skipped and dist_info.is_main:
            warnings.warn(f"{t.init_checkpoint}: {len(skipped)} entries not loaded (name/shape differ), e.g. "
                          f"{skipped[:3]}", stacklevel=2)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, t)
    iters_per_epoch = math.ceil(len(_epoch_indices(len(dataset), 0, t.seed, dist_info)) / per_process_batch)
    per_unit = iters_per_epoch if t.unit == "epoch" else 1
    finetune_iters = t.finetune.length * per_unit if t.finetune else 0
    total_iters = finetune_iters + t.length * per_unit
    if t.warmup_iters > t.length * per_unit:
        schedule_iters = (f"{t.length} epochs of {iters_per_epoch} iterations = " if t.unit == "epoch" else ""
                          ) + f"{t.length * per_unit} iterations"
        raise ConfigError(f"train.warmup_iters: {t.warmup_iters} is longer than the schedule ({schedule_iters})")
    schedule = LrSchedule(
        base_lr=t.lr, decay_iters=tuple(s * per_unit for s in t.decay_steps), gamma=t.gamma,
        warmup_iters=t.warmup_iters, warmup_ratio=t.warmup_ratio,
        finetune_iters=finetune_iters, finetune_lr=t.finetune.lr if t.finetune else 0.0)
    scheduler = build_scheduler(optimizer, schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    start_iter = 0
    if resume:
        found = ckpt.load_latest_checkpoint(ckpt_dir, map_location="cpu", move_bad_aside=dist_info.is_main)
        if found is None:
            if dist_info.is_main:
                warnings.warn(f"{ckpt_dir}: no checkpoint to resume from; starting at iteration 0", stacklevel=2)
        else:
            path, state = found
            start_iter = _restore_training_state(path, state, model, optimizer, scheduler, scaler, dist_info)

    if dist_info.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if identity is not None:
            run_dir.write_identity(output_dir, identity)
        atomic_write_text(output_dir / "config.yaml", experiment_to_yaml(cfg))
        _call(callbacks, "on_train_start", cfg)

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if not dist_info.distributed:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=r.find_unused_parameters)

    def save(iteration: int) -> Path | None:
        rng_states = all_gather_objects(ckpt.capture_rng_state())  # every process takes part
        if not dist_info.is_main:
            return None
        state = {"iteration": iteration, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                 "rng": rng_states, "config": training_identity(cfg), "categories": categories}
        path = ckpt.save_checkpoint(ckpt.checkpoint_path(ckpt_dir, iteration), state)
        ckpt.prune_checkpoints(ckpt_dir, r.keep_checkpoints)
        _call(callbacks, "on_checkpoint", iteration, path)
        return path

    in_finetune = start_iter < finetune_iters
    if in_finetune:
        _set_trainable(model, t.finetune.trainable, base_trainable)
    train_model = wrap(model)
    model.train()

    progress_bar = TrainingProgress(total_iters, start_iter, f"{cfg.name} seed {t.seed}",
                                    progress if dist_info.is_main else "off")
    window: dict[str, float] = {}
    window_count = 0
    last_losses: dict[str, float] = {}
    last_path: Path | None = None
    iteration = start_iter
    started = time.perf_counter()
    try:
        while iteration < total_iters:
            epoch, position = divmod(iteration, iters_per_epoch)
            indices = _epoch_indices(len(dataset), epoch, t.seed, dist_info)[position * per_process_batch:]
            samples = EpochSamples(dataset, t.seed, epoch)
            loader = DataLoader(samples, batch_size=per_process_batch, sampler=indices,
                                collate_fn=collate_fn or _default_collate(), num_workers=r.num_workers,
                                pin_memory=device.type == "cuda",
                                generator=torch.Generator().manual_seed(t.seed * 100_003 + epoch))
            for images, targets in loader:
                if iteration >= total_iters:
                    break
                if in_finetune and iteration >= finetune_iters:  # fine-tune phase over: train everything
                    in_finetune = False
                    _set_trainable(model, None, base_trainable)
                    train_model = wrap(model)
                images, targets = _to_device(images, device), _to_device(targets, device)
                lr = optimizer.param_groups[0]["lr"]
                with _autocast(amp, device):
                    losses = train_model(images, targets)
                values = _loss_values(losses)
                bad = _first_non_finite(values)
                if any_process(bad is not None, device):
                    term, value = bad if bad is not None else ("(in another process)", float("nan"))
                    raise NonFiniteLossError(iteration + 1, term, value)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                if t.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                iteration += 1
                last_losses = values
                for key, value in values.items():
                    window[key] = window.get(key, 0.0) + value
                window_count += 1
                if iteration % r.log_every == 0 or iteration == total_iters:
                    metrics = all_reduce_mean({f"loss/{k}": v / window_count for k, v in window.items()}, device)
                    metrics["lr"] = lr
                    metrics["epoch"] = iteration / iters_per_epoch
                    window, window_count = {}, 0
                    if dist_info.is_main:
                        progress_bar.set_postfix({k.removeprefix("loss/"): f"{v:.4g}" for k, v in metrics.items()
                                                  if k != "epoch"})
                        _call(callbacks, "on_log", iteration, metrics)
                progress_bar.update(1)
                if iteration % r.checkpoint_every == 0 and iteration < total_iters:
                    last_path = save(iteration) or last_path
    finally:
        progress_bar.close()
    seconds = time.perf_counter() - started

    final_model = output_dir / "model_final.pt"
    finished_before = iteration == start_iter and start_iter > 0 and final_model.is_file()
    if not finished_before:  # a run resumed at its end keeps its files byte for byte (DVC hashes them)
        last_path = save(iteration) or last_path
        if dist_info.is_main:
            ckpt.save_checkpoint(final_model, {"iteration": iteration, "model": model.state_dict(),
                                               "config": training_identity(cfg), "categories": categories})
    if last_path is None:
        last_path = ckpt.checkpoint_path(ckpt_dir, iteration)
    result = TrainResult(output_dir=output_dir, final_model=final_model, last_checkpoint=last_path,
                         iterations=iteration, start_iteration=start_iter, seconds=seconds,
                         last_losses=last_losses)
    if dist_info.is_main:
        _call(callbacks, "on_train_end", result)
    return result


def _restore_training_state(path: Path, state: dict[str, Any], model: torch.nn.Module,
                            optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                            dist_info: DistInfo) -> int:
    """Put a checkpoint's weights, optimiser, schedule, scaler and RNG states back; returns its iteration.
    A checkpoint of another model or recipe is one ``CheckpointError`` line naming the file."""
    ckpt.load_model_state(model, state["model"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        ckpt.restore_rng_state(rng[dist_info.rank] if len(rng) == dist_info.world_size else rng[0])
        return int(state["iteration"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path}: its optimiser / schedule / RNG state does not fit this run "
                              f"({type(exc).__name__}: {first_line})") from None


def _default_collate() -> Callable:
    try:
        from spatialflow.data.dataset import collate
    except ImportError:  # pragma: no cover - the data package is part of this repository
        return collate_lists
    return collate


def _loss_values(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """All loss terms as floats, with one device synchronisation."""
    if "total" not in losses:
        raise SpatialFlowError(f"the model returned losses {sorted(losses)} without a 'total' entry")
    keys = list(losses)
    stacked = torch.stack([losses[k].detach().float().reshape(()) for k in keys]).cpu().tolist()
    return dict(zip(keys, stacked))


def _first_non_finite(values: dict[str, float]) -> tuple[str, float] | None:
    """The first non-finite term, naming a component before 'total' (the sum is NaN because of it)."""
    for key in sorted(values, key=lambda k: k == "total"):
        if not math.isfinite(values[key]):
            return key, values[key]
    return None


def _call(callbacks: Sequence[Callback], hook: str, *args: Any) -> None:
    """Run a hook on every callback; a failing callback warns but never stops training."""
    for callback in callbacks:
        try:
            getattr(callback, hook)(*args)
        except Exception as exc:  # noqa: BLE001 - tracking must not kill a training run
            warnings.warn(f"callback {type(callback).__name__}.{hook} failed: {exc!r}", stacklevel=2)


def load_trained_model(path: str | Path, model_factory: ModelFactory | None = None,
                       device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ExperimentConfig, list[dict] | None]:
    """Model (eval mode), config and categories from ``model_final.pt`` or a training checkpoint."""
    from spatialflow.engine.config import load_experiment_config

    state = ckpt.load_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(f"{path}: has no config entry; cannot rebuild the model")
    cfg = load_experiment_config(state["config"])
    categories = state.get("categories")
    model = model_factory(cfg, categories) if model_factory else default_model(cfg, categories, pretrained=False)
    ckpt.load_model_state(model, state["model"], path)
    return model.to(device).eval(), cfg, categories
