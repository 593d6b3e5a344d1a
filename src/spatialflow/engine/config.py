"""The experiment configuration of one training row, typed, in three kinds of settings.

A YAML file (or a dict)::

    model:  {preset: spatialflow, ...overrides of SpatialFlowConfig}   \\
    data:   {train: {json, png_dir, image_dir}, val: {...}, test: {...},  | training identity: what
             transforms: {min_size, max_size, flip, scale_crop}}          | decides the weights
    train:  TrainConfig (the paper's recipe: SGD, warm-up, step decay, seed, init checkpoint, ...)  /
    run:    RunConfig (checkpoint / log frequency, workers, device): never changes the weights
    output_dir, name: where the run lives and what it is called

The third kind, how a trained model is *evaluated* (thresholds, merge, TTA), is not part of an experiment
config at all: see :class:`spatialflow.models.config.InferenceConfig` and
:class:`spatialflow.inference.predict.TTAConfig`.

Every value is checked (pydantic, unknown keys forbidden) before anything touches the disk;
``load_experiment_config`` raises one :class:`ConfigError` line naming the key and the bad value.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spatialflow.errors import ConfigError
from spatialflow.utils.yaml_io import read_yaml

AMP_MODES = ("none", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Config(BaseModel):
    """Unknown keys are errors (a typo must never pass silently); assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


with warnings.catch_warnings():  # the key `json` shadows pydantic's deprecated BaseModel.json(): intended
    warnings.filterwarnings("ignore", message='Field name "json"')

    class SplitConfig(_Config):
        """One split in COCO-panoptic format. ``png_dir`` is None for a split without ground truth (test-dev)."""

        json: str
        image_dir: str
        png_dir: str | None = None


class ScaleCropConfig(_Config):
    """Cityscapes recipe: random rescale by a factor in ``scale``, then a random ``crop`` (H, W)."""

    scale: tuple[PositiveFloat, PositiveFloat]
    crop: tuple[PositiveInt, PositiveInt]


class TransformConfig(_Config):
    """Training/eval image transforms, longer side at most ``max_size``. Training draws the shorter side per
    image: ``min_size`` as a list = one of the list (mmdet ``multiscale_mode='value'``); ``min_size_range``
    = (low, high) = an integer in [low, high] (mmdet ``multiscale_mode='range'``). Evaluation uses
    ``min_size`` (the largest of a list)."""

    min_size: PositiveInt | list[PositiveInt] = 800
    min_size_range: tuple[PositiveInt, PositiveInt] | None = None
    max_size: PositiveInt = 1333
    flip: Fraction = 0.5
    scale_crop: ScaleCropConfig | None = None

    @property
    def eval_min_size(self) -> int:
        """The shorter side evaluation resizes to: ``min_size``, the largest of a list."""
        return self.min_size if isinstance(self.min_size, int) else max(self.min_size)

    @model_validator(mode="after")
    def _one_multiscale_mode(self) -> TransformConfig:
        if self.min_size_range is None:
            return self
        low, high = self.min_size_range
        if low > high:
            raise ValueError(f"min_size_range: must be (low, high) with low <= high, got {[low, high]}")
        if isinstance(self.min_size, list):
            raise ValueError(f"min_size_range: a range and a list min_size {self.min_size} exclude each other"
                             " (pick one multi-scale mode)")
        if self.scale_crop is not None:
            raise ValueError("min_size_range: training with scale_crop does not resize by the shorter side")
        return self


class DataConfig(_Config):
    train: SplitConfig | None = None
    val: SplitConfig | None = None
    test: SplitConfig | None = None
    transforms: TransformConfig = Field(default_factory=TransformConfig)


class FinetuneConfig(_Config):
    """Table 7 "-COCO" recipe: first train only the parameters matching ``trainable`` (fnmatch patterns on
    parameter names) for ``length`` units at ``lr``, the rest frozen; then the normal schedule."""

    trainable: Annotated[list[str], Field(min_length=1)]
    length: PositiveInt
    lr: PositiveFloat


class TrainConfig(_Config):
    """The training recipe. ``unit`` says whether ``length`` and ``decay_steps`` count epochs or iterations."""

    optimizer: Literal["sgd", "adamw"] = "sgd"  # SGD (the paper) | AdamW (the tiny CPU profile)
    lr: PositiveFloat = 5e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    batch_size: PositiveInt = 8  # global: split evenly over the processes
    unit: Literal["epoch", "iteration"] = "epoch"
    length: PositiveInt = 20
    decay_steps: list[PositiveInt] = Field(default_factory=lambda: [16, 19])
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    warmup_iters: NonNegativeInt = 500  # always in iterations
    warmup_ratio: Annotated[float, Field(gt=0, le=1)] = 0.001
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only
    seed: NonNegativeInt = 0
    max_grad_norm: PositiveFloat | None = None
    deterministic: bool = False
    init_checkpoint: str | None = None  # e.g. a COCO model for the Cityscapes-from-COCO recipe
    finetune: FinetuneConfig | None = None

    @model_validator(mode="after")
    def _decay_within_length(self) -> TrainConfig:
        steps = list(self.decay_steps)
        if steps != sorted(steps) or any(s > self.length for s in steps):
            raise ValueError(f"decay_steps: must be increasing and within 1..length={self.length}, got {steps}")
        return self


class RunConfig(_Config):
    """How a run is executed. None of it changes the weights: a run resumes across changes of these."""

    checkpoint_every: PositiveInt = 1000  # iterations
    keep_checkpoints: PositiveInt = 3
    log_every: PositiveInt = 20  # iterations
    num_workers: NonNegativeInt = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    find_unused_parameters: bool = False  # DDP option


RUN_KEYS = frozenset(RunConfig.model_fields)


class ExperimentConfig(_Config):
    model: dict = Field(default_factory=lambda: {"preset": "spatialflow"})
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    output_dir: str = "outputs/run"
    name: str = "run"

    @model_validator(mode="after")
    def _model_is_a_preset(self) -> ExperimentConfig:
        if "preset" not in self.model:
            raise ValueError("model: must be a mapping with a 'preset' key (plus SpatialFlowConfig overrides)")
        return self


def _one_line(exc: ValidationError) -> str:
    """The first pydantic error as ``key.path: problem, got value``."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "config"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if err["type"] == "missing":
        return f"{where}: required key missing"
    if ": " in message and err["type"] == "value_error":  # our own validators name their key
        return f"{where + '.' if where != 'config' else ''}{message}"
    return f"{where}: {message}, got {err.get('input')!r}"


def _check_model(model: dict) -> None:
    """The model section must build a SpatialFlowConfig (its own one-line errors name the key)."""
    from spatialflow.models.config import model_config

    model_config(model["preset"], **{k: v for k, v in model.items() if k != "preset"})


def load_experiment_config(source: str | os.PathLike | dict) -> ExperimentConfig:
    """Read and validate an experiment config from a YAML file or a dict."""
    if isinstance(source, dict):
        raw, where = source, "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        raw, where = read_yaml(path), str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    misplaced = sorted(RUN_KEYS & set(raw.get("train") or {}))
    if misplaced:
        raise ConfigError(f"{where}: train.{misplaced[0]}: is a run setting (it never changes the weights); "
                          "put it under 'run:'")
    try:
        cfg = ExperimentConfig.model_validate(raw)
        _check_model(cfg.model)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_one_line(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return cfg


def training_identity(cfg: ExperimentConfig) -> dict:
    """What decides the weights: model, data and recipe (plain, JSON/YAML-safe). Runs with equal identities
    are the same training; a run folder holding another identity is never continued."""
    return cfg.model_dump(mode="json", include={"model", "data", "train"})


def experiment_to_dict(cfg: ExperimentConfig) -> dict:
    """Plain dict (YAML/JSON-safe, loadable with ``weights_only=True``) of the whole config."""
    return cfg.model_dump(mode="json")


def experiment_to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(experiment_to_dict(cfg), sort_keys=False)

