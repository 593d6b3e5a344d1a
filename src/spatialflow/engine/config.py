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
``load_experiment_config`` raises one :class:`ConfigError` line naming the key and the bad value. Numbers
are finite; image sizes have upper bounds far above any recipe's (:data:`MAX_SHORT_SIDE`,
:data:`MAX_LONG_SIDE`, :data:`MAX_SCALE`), so a typo cannot ask for terabytes; every text is valid UTF-8;
``output_dir`` names a folder of its own.
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

# Upper bounds of the image sizes. The largest recipes: Cityscapes 1024 x 2048 (x2 scale: 2048 x 4096), the
# Cityscapes TTA 1344 x 2688, COCO multi-scale training 1400 / 1600. A typo (min_size: 1000000) would
# otherwise ask for terabytes.
MAX_SHORT_SIDE = 4096  # min_size, min_size_range
MAX_LONG_SIDE = 8192  # max_size, crop sides
MAX_SCALE = 4.0  # scale_crop factors
MAX_SEED = 2**32 - 1  # numpy's seed range

PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ShortSide = Annotated[int, Field(strict=True, ge=1, le=MAX_SHORT_SIDE)]
LongSide = Annotated[int, Field(strict=True, ge=1, le=MAX_LONG_SIDE)]


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

    scale: tuple[Annotated[float, Field(gt=0, le=MAX_SCALE)], Annotated[float, Field(gt=0, le=MAX_SCALE)]]
    crop: tuple[LongSide, LongSide]


class TransformConfig(_Config):
    """Training/eval image transforms, longer side at most ``max_size``. Training draws the shorter side per
    image: ``min_size`` as a list = one of the list (mmdet ``multiscale_mode='value'``); ``min_size_range``
    = (low, high) = an integer in [low, high] (mmdet ``multiscale_mode='range'``). Evaluation uses
    ``min_size`` (the largest of a list)."""

    min_size: ShortSide | list[ShortSide] = 800
    min_size_range: tuple[ShortSide, ShortSide] | None = None
    max_size: LongSide = 1333
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
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-4
    batch_size: PositiveInt = 8  # global: split evenly over the processes
    unit: Literal["epoch", "iteration"] = "epoch"
    length: PositiveInt = 20
    decay_steps: list[PositiveInt] = Field(default_factory=lambda: [16, 19])
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    warmup_iters: NonNegativeInt = 500  # always in iterations; at most the schedule's length
    warmup_ratio: Annotated[float, Field(gt=0, le=1)] = 0.001
    amp: Literal["none", "bf16", "fp16"] = "none"  # fp16: CUDA; bf16: CUDA, or a CPU with native bfloat16
    seed: Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)] = 0
    max_grad_norm: PositiveFloat | None = None
    deterministic: bool = False
    # CPU threads the training process computes with (torch.set_num_threads). Identity: oneDNN and ATen split
    # their sums by thread, so another count trains other weights (docs/settings.md). None: torch's default,
    # for GPU training, where CUDA kernels compute the weights.
    cpu_threads: PositiveInt | None = None
    init_checkpoint: str | None = None  # e.g. a COCO model for the Cityscapes-from-COCO recipe
    finetune: FinetuneConfig | None = None

    @model_validator(mode="after")
    def _decay_within_length(self) -> TrainConfig:
        steps = list(self.decay_steps)
        if steps != sorted(steps) or any(s > self.length for s in steps):
            raise ValueError(f"decay_steps: must be increasing and within 1..length={self.length}, got {steps}")
        return self

    @model_validator(mode="after")
    def _warmup_within_length(self) -> TrainConfig:
        """In epochs the length in iterations depends on the data: the trainer checks it there."""
        if self.unit == "iteration" and self.warmup_iters > self.length:
            raise ValueError(f"warmup_iters: {self.warmup_iters} is longer than the schedule (length "
                             f"{self.length} iterations)")
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

    @model_validator(mode="after")
    def _a_folder_of_its_own(self) -> ExperimentConfig:
        problem = run_folder_problem(self.output_dir)
        if problem is not None:
            raise ValueError(f"output_dir: {problem}")
        return self

    @model_validator(mode="after")
    def _text_is_utf8(self) -> ExperimentConfig:
        found = first_non_utf8(self.model_dump(mode="python"))
        if found is not None:
            raise ValueError(found)
        return self


def run_folder_problem(path: str) -> str | None:
    """What is wrong with ``path`` as a run folder (None if nothing): it must name a folder of its own, not be
    empty, '.', '..' or '/' (a run is moved aside by renaming its folder, and must not spill into the
    current one)."""
    if not path.strip():
        return "is empty; give the run's own folder, e.g. outputs/run"
    if Path(os.path.normpath(path)).name in ("", ".", ".."):
        return f"{path!r} names no folder of its own; give the run's own folder, e.g. outputs/run"
    return None


def first_non_utf8(value: Any, where: str = "") -> str | None:
    """``"<key>: not valid UTF-8 text (...)"`` for the first key or text in ``value`` (nested dicts / lists)
    that cannot be written as UTF-8 (a lone surrogate, e.g. a non-UTF-8 file name); None when all can."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"{where or 'config'}: not valid UTF-8 text ({value[exc.start]!r} at position {exc.start}); "
                    "file names and text in a config must be UTF-8")
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_non_utf8(key, where or "config") or first_non_utf8(item, f"{where}.{key}".lstrip("."))
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = first_non_utf8(item, f"{where}.{i}")
            if found:
                return found
    return None


def _is_union_member(part: Any) -> bool:
    """A pydantic location part naming a union member ('constrained-int', 'list[...]'): config keys never
    contain '-' or '['."""
    return isinstance(part, str) and ("-" in part or "[" in part)


def _key_path(loc: tuple) -> str:
    """A pydantic error location as a dotted key."""
    return ".".join(str(part) for part in loc if not _is_union_member(part))


def _field_of(loc: tuple) -> tuple:
    """The location up to the first union member: errors of one value allowed in several forms share it."""
    members = [i for i, part in enumerate(loc) if _is_union_member(part)]
    return tuple(loc[: members[0]]) if members else tuple(loc)


def _one_line(exc: ValidationError) -> str:
    """The first pydantic error as ``key.path: problem, got value``. For a value allowed in several forms
    (``min_size``: an integer or a list), the error of the form it has, not 'should be an integer'."""
    errors = exc.errors()
    same_value = [e for e in errors if _field_of(e["loc"]) == _field_of(errors[0]["loc"])]
    err = next((e for e in same_value if not e["type"].endswith(("_type", "_parsing"))), errors[0])
    where = _key_path(err["loc"]) or "config"
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

