"""The experiment configuration of one training row: model, data, training recipe, output folder.

A YAML file (or a dict) with four sections::

    model:  {preset: tiny, ...overrides of SpatialFlowConfig}
    data:   {train: {json, png_dir, image_dir}, val: {...}, test: {...},
             transforms: {min_size, max_size, flip, scale_crop}}
    train:  TrainConfig fields (the paper's recipe: SGD, warm-up, step decay, ...)
    output_dir: folder of the checkpoints, resolved config and metrics

``load_experiment_config`` validates everything and raises ``ConfigError`` naming the bad key.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spatialflow.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class SplitConfig:
    """One split in COCO-panoptic format. ``png_dir`` is None for a split without ground truth (test-dev)."""

    json: str
    image_dir: str
    png_dir: str | None = None


@dataclass
class TransformConfig:
    """Training/eval image transforms. ``min_size`` as a list = pick one shorter side at random per image."""

    min_size: int | list[int] = 800
    max_size: int = 1333
    flip: float = 0.5
    # Cityscapes recipe: {"scale": [0.5, 2.0], "crop": [512, 1024]}
    scale_crop: dict | None = None


@dataclass
class DataConfig:
    train: SplitConfig | None = None
    val: SplitConfig | None = None
    test: SplitConfig | None = None
    transforms: TransformConfig = field(default_factory=TransformConfig)


@dataclass
class FinetuneConfig:
    """Table 7 "-COCO" recipe: first train only the parameters matching ``trainable`` (fnmatch patterns on
    parameter names) for ``length`` units at ``lr``, the rest frozen; then the normal schedule."""

    trainable: list[str]
    length: int
    lr: float


@dataclass
class TrainConfig:
    """The training recipe. ``unit`` says whether ``length`` and ``decay_steps`` count epochs or iterations."""

    optimizer: str = "sgd"  # "sgd" (the paper) | "adamw" (the tiny CPU profile: few hundred iterations)
    lr: float = 5e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 8  # global: split evenly over the processes
    unit: str = "epoch"  # "epoch" | "iteration"
    length: int = 20
    decay_steps: list[int] = field(default_factory=lambda: [16, 19])
    gamma: float = 0.1
    warmup_iters: int = 500  # always in iterations
    warmup_ratio: float = 0.001
    amp: str = "none"  # "none" | "bf16" | "fp16" (CUDA only)
    checkpoint_every: int = 1000  # iterations
    keep_checkpoints: int = 3
    log_every: int = 20  # iterations
    seed: int = 0
    num_workers: int = 2
    max_grad_norm: float | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    deterministic: bool = False
    find_unused_parameters: bool = False  # DDP option
    init_checkpoint: str | None = None  # e.g. a COCO model for the Cityscapes-from-COCO recipe
    finetune: FinetuneConfig | None = None


@dataclass
class ExperimentConfig:
    model: dict = field(default_factory=lambda: {"preset": "tiny"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = "outputs/run"
    name: str = "run"


def _build(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys (typos must not pass silently)."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    try:
        return cls(**values)
    except TypeError as exc:  # missing required keys
        raise ConfigError(f"{where}: {exc}") from None


def _split(values: Any, where: str) -> SplitConfig | None:
    return None if values is None else _build(SplitConfig, values, where)


def _validate(cfg: ExperimentConfig) -> None:
    t = cfg.train
    if t.unit not in ("epoch", "iteration"):
        raise ConfigError(f"train.unit: must be 'epoch' or 'iteration', got {t.unit!r}")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: must be one of {OPTIMIZERS}, got {t.optimizer!r}")
    if t.amp not in AMP_MODES:
        raise ConfigError(f"train.amp: must be one of {AMP_MODES}, got {t.amp!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device: must be 'auto', 'cpu' or 'cuda', got {t.device!r}")
    positive = {"lr": t.lr, "batch_size": t.batch_size, "length": t.length,
                "checkpoint_every": t.checkpoint_every, "log_every": t.log_every,
                "keep_checkpoints": t.keep_checkpoints}
    for key, value in positive.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"train.{key}: must be > 0, got {value!r}")
    if t.warmup_iters < 0 or not 0 < t.warmup_ratio <= 1:
        raise ConfigError("train.warmup_iters must be >= 0 and train.warmup_ratio in (0, 1]")
    if list(t.decay_steps) != sorted(t.decay_steps) or any(s <= 0 or s > t.length for s in t.decay_steps):
        raise ConfigError(f"train.decay_steps: must be increasing and within 1..length={t.length}, "
                          f"got {t.decay_steps}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise ConfigError(f"train.max_grad_norm: must be > 0 or null, got {t.max_grad_norm}")
    if t.finetune is not None and (t.finetune.length <= 0 or t.finetune.lr <= 0 or not t.finetune.trainable):
        raise ConfigError("train.finetune: needs trainable patterns, length > 0 and lr > 0")
    if not isinstance(cfg.model, dict) or "preset" not in cfg.model:
        raise ConfigError("model: must be a mapping with a 'preset' key (plus SpatialFlowConfig overrides)")


def load_experiment_config(source: str | os.PathLike | dict) -> ExperimentConfig:
    """Read and validate an experiment config from a YAML file or a dict."""
    if isinstance(source, dict):
        raw, where = source, "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        where = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    try:
        return _from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _from_dict(raw: dict) -> ExperimentConfig:
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {unknown}; allowed: {sorted(top)}")
    data_raw = dict(raw.get("data") or {})
    unknown = sorted(set(data_raw) - {"train", "val", "test", "transforms"})
    if unknown:
        raise ConfigError(f"data: unknown key(s) {unknown}")
    data = DataConfig(
        train=_split(data_raw.get("train"), "data.train"),
        val=_split(data_raw.get("val"), "data.val"),
        test=_split(data_raw.get("test"), "data.test"),
        transforms=_build(TransformConfig, data_raw.get("transforms"), "data.transforms"),
    )
    train_raw = dict(raw.get("train") or {})
    finetune = train_raw.pop("finetune", None)
    train = _build(TrainConfig, train_raw, "train")
    train.finetune = None if finetune is None else _build(FinetuneConfig, finetune, "train.finetune")
    cfg = ExperimentConfig(
        model=dict(raw.get("model") or {"preset": "tiny"}),
        data=data,
        train=train,
        output_dir=str(raw.get("output_dir", ExperimentConfig.output_dir)),
        name=str(raw.get("name", ExperimentConfig.name)),
    )
    _validate(cfg)
    return cfg


def experiment_to_dict(cfg: ExperimentConfig) -> dict:
    """Plain dict (YAML/JSON-safe, loadable with ``weights_only=True``) of a config."""
    return dataclasses.asdict(cfg)


def experiment_to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(experiment_to_dict(cfg), sort_keys=False)
