"""The whole experiment grid of params.yaml checked before anything runs: one line per problem.

``make repro`` runs ``python -m spatialflow_repro check-params`` before ``dvc repro`` (so DVC never reads
a params.yaml our strict reader refuses), and every ``kedro run`` checks the same grid first (the pipeline
registry on params.yaml, a hook on the merged parameters), so ``dvc repro`` run by hand also stops with
one line per problem instead of a stage's traceback.

What is checked:

- row names (keys of ``search_rows``, ``rows``, ``pretrained_rows``, ``testdev_rows``, ``pretrain_backbones``,
  and the rows named by ``init_from`` and ``figures``) are ``[a-z0-9_]+``: they become paths, DVC stage
  names and Kedro namespaces;
- every row has only known keys of the right type (:class:`TrainedRow`), a known model preset, and names
  trained rows where it refers to one;
- the active profile's training schedules, inference settings and TTA presets are valid;
- every row the active profile runs resolves to a valid experiment config
  (:func:`spatialflow_repro.rows.experiment_config` then :func:`spatialflow.engine.config.load_experiment_config`)
  and to valid inference settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spatialflow.errors import ConfigError, SpatialFlowError

ROW_NAME = re.compile(r"[a-z0-9_]+")
ROW_NAME_RULE = "only lower-case letters, digits and '_' (it becomes a path, a DVC stage and a Kedro namespace)"
NAMED_GROUPS = ("search_rows", "rows", "pretrained_rows", "testdev_rows", "pretrain_backbones")

# A stand-in for the data stage's manifest: enough for a row's experiment config to be built and checked.
_SPLIT = {"json": "split.json", "image_dir": "images", "png_dir": "panoptic"}
_MANIFEST_ENTRY = {"num_things": 1, "num_stuff": 1, "splits": {role: _SPLIT for role in ("train", "val", "test")}}


class ParamsError(ConfigError):
    """Every problem of a params.yaml, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TrainedRow(_Entry):
    """One row of ``search_rows`` / ``rows`` / ``pretrained_rows``."""

    tables: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=7)]], Field(min_length=1)]
    dataset: Literal["coco", "cityscapes"]
    preset: str
    backbone: str
    size: str | int
    stuff_loss_weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    init_from: str | None = None
    finetune_class_layers_first: bool = False
    val_tta: str | None = None
    schedule: dict[str, Any] | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from spatialflow.models.config import PRESETS

        if value not in PRESETS:
            raise ValueError(f"unknown model preset {value!r}; choose one of {sorted(PRESETS)}")
        return value


class TestdevRow(_Entry):
    tables: Annotated[list[Annotated[int, Field(strict=True, ge=1, le=7)]], Field(min_length=1)]
    tta: str | None = None


class Seeds(_Entry):
    """``seeds``: the values, and the rows that train once per value (the others: the first value)."""

    values: Annotated[list[Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)]], Field(min_length=1)]
    rows: list[str] = []


class Figures(_Entry):
    baseline_row: str
    spatialflow_row: str
    num_images: Annotated[int, Field(strict=True, ge=1)] = 4


AMP_SETTINGS = ("none", "bf16", "fp16", "bf16_if_native")  # spatialflow.engine.precision.BF16_IF_NATIVE


def _pydantic_lines(where: str, exc: ValidationError) -> list[str]:
    """Every pydantic error as ``where.key: problem``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        key = f"{where}.{loc}" if loc else where
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key missing")
        elif err["type"] == "value_error":  # our own validators say what they got
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{key}: {err['msg']}, got {err.get('input')!r}")
    return list(dict.fromkeys(lines))


def _validated(model: type[BaseModel], value: Any, where: str, problems: list[str]) -> BaseModel | None:
    """``value`` as ``model``, or None with its problems added (``where.key: problem``)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems += _pydantic_lines(where, exc)
        return None


def _mapping(params: dict, key: str) -> dict:
    value = params.get(key)
    return value if isinstance(value, dict) else {}


def name_problems(params: dict) -> list[str]:
    """Row names (and names that refer to rows) that are not ``[a-z0-9_]+``."""
    problems = []
    for group in NAMED_GROUPS:
        value = params.get(group)
        if value is not None and not isinstance(value, dict):
            problems.append(f"{group}: must be a mapping of rows, got {type(value).__name__}")
            continue
        for name in value or {}:
            if not isinstance(name, str) or not ROW_NAME.fullmatch(name):
                problems.append(f"{group}.{name}: bad row name {name!r}: {ROW_NAME_RULE}")
    for group in ("pretrained_rows", "rows", "search_rows"):
        for name, row in _mapping(params, group).items():
            target = row.get("init_from") if isinstance(row, dict) else None
            if target is not None and not (isinstance(target, str) and ROW_NAME.fullmatch(target)):
                problems.append(f"{group}.{name}.init_from: bad row name {target!r}: {ROW_NAME_RULE}")
    for key in ("baseline_row", "spatialflow_row"):
        target = _mapping(params, "figures").get(key)
        if target is not None and not (isinstance(target, str) and ROW_NAME.fullmatch(target)):
            problems.append(f"figures.{key}: bad row name {target!r}: {ROW_NAME_RULE}")
    return problems


def entry_problems(params: dict) -> list[str]:
    """Rows, test-dev rows and figures against their typed models, and their references to trained rows."""
    from spatialflow_repro.rows import TRAINED_ROW_GROUPS

    problems, trained = [], set()
    for group in TRAINED_ROW_GROUPS:
        for name, row in _mapping(params, group).items():
            if name in trained:
                problems.append(f"{group}.{name}: row {name!r} appears in another group too")
            trained.add(name)
            if not isinstance(row, dict):
                problems.append(f"{group}.{name}: must be a mapping, got {row!r}")
                continue
            _validated(TrainedRow, row, f"{group}.{name}", problems)
            if group == "search_rows" and row.get("stuff_loss_weight") is None:
                problems.append(f"{group}.{name}.stuff_loss_weight: required: a row of Table 1's search trains "
                                "at its own weight")
            if row.get("init_from") is not None and row["init_from"] not in trained - {name}:
                problems.append(f"{group}.{name}.init_from: {row['init_from']!r} is not a trained row above it")
    for name, row in _mapping(params, "testdev_rows").items():
        _validated(TestdevRow, row, f"testdev_rows.{name}", problems)
        if name not in trained:
            problems.append(f"testdev_rows.{name}: not a trained row")
    figures = _validated(Figures, params["figures"], "figures", problems) if "figures" in params else None
    for key in ("baseline_row", "spatialflow_row") if figures else ():
        if getattr(figures, key) not in trained:
            problems.append(f"figures.{key}: {getattr(figures, key)!r} is not a trained row")
    seeds = _validated(Seeds, params["seeds"], "seeds", problems) if "seeds" in params else None
    problems += [f"seeds.rows: {name!r} is not a trained row" for name in (seeds.rows if seeds else [])
                 if name not in trained]
    return problems


def profile_problems(profile: dict) -> list[str]:
    """The active profile's schedules (TrainConfig), inference settings and TTA presets."""
    from spatialflow.engine.config import ScaleCropConfig, TrainConfig
    from spatialflow.inference.predict import TTAConfig
    from spatialflow.models.config import inference_config

    where, problems = f"profiles.{profile['name']}", []
    weights = profile.get("stuff_loss_weight")
    if not isinstance(weights, dict):
        problems.append(f"{where}.stuff_loss_weight: must map each dataset to a number or 'search', got {weights!r}")
    else:
        for dataset, value in weights.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")
            if value != "search" and not number:
                problems.append(f"{where}.stuff_loss_weight.{dataset}: must be a number >= 0 or 'search', got {value!r}")
    training = profile.get("training") if isinstance(profile.get("training"), dict) else {}
    amps = {f"{where}.training.amp": training.get("amp", "none")}
    for row, overrides in (training.get("row_overrides") or {}).items():
        if isinstance(overrides, dict) and "amp" in overrides:
            amps[f"{where}.training.row_overrides.{row}.amp"] = overrides["amp"]
    for key, amp in amps.items():
        if amp not in AMP_SETTINGS:
            problems.append(f"{key}: must be one of {', '.join(AMP_SETTINGS)}, got {amp!r}")
    threads = training.get("cpu_threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        problems.append(f"{where}.training.cpu_threads: must be an integer >= 1 or null, got {threads!r}")
    for dataset, schedule in (training.get("schedule") or {}).items():
        key = f"{where}.training.schedule.{dataset}"
        if not isinstance(schedule, dict):
            problems.append(f"{key}: must be a mapping, got {schedule!r}")
            continue
        schedule = dict(schedule)
        scale_crop = schedule.pop("scale_crop", None)
        try:
            TrainConfig.model_validate(schedule)
            if scale_crop is not None:
                ScaleCropConfig.model_validate(scale_crop)
        except ValidationError as exc:
            problems += _pydantic_lines(key, exc)
    inference = profile.get("inference") if isinstance(profile.get("inference"), dict) else {}
    try:
        inference_config(inference.get("detection") or {})
    except (ConfigError, TypeError) as exc:
        problems.append(f"{where}.inference.detection: {str(exc).removeprefix('inference.')}")
    for dataset, merge in (inference.get("merge") or {}).items():
        try:
            inference_config({"merge": merge})
        except (ConfigError, TypeError) as exc:
            problems.append(f"{where}.inference.merge.{dataset}: {str(exc).removeprefix('inference.merge.')}")
    for name, tta in (inference.get("tta") or {}).items():
        try:
            TTAConfig(scales=tta["scales"], flip=bool(tta.get("flip", True)))
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{where}.inference.tta.{name}: {exc}")
    return list(dict.fromkeys(problems))


def row_problem(name: str, row: dict, params: dict, profile: dict) -> str | None:
    """Why this row does not resolve to a valid experiment config and inference settings in the profile."""
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.models.config import inference_config
    from spatialflow_repro.rows import experiment_config, inference_settings, row_stuff_loss_weight, tta_settings

    try:
        stuff_loss_weight, _ = row_stuff_loss_weight(row, profile, selected=1.0)
        init = "init_checkpoint.pt" if row.get("init_from") else None
        config = experiment_config(name, row, params, {row["dataset"]: _MANIFEST_ENTRY}, stuff_loss_weight, 0, init,
                                   run_folder=f"runs/{name}")
        load_experiment_config(config)
        inference_config(inference_settings(row, profile))
        tta_settings(row.get("val_tta"), profile)
        testdev = _mapping(params, "testdev_rows").get(name)
        if isinstance(testdev, dict):
            tta_settings(testdev.get("tta"), profile)
    except (SpatialFlowError, KeyError, TypeError, ValueError) as exc:
        message = str(exc).removeprefix("config: ")
        return message if not isinstance(exc, KeyError) else f"missing setting {exc}"
    return None


def grid_problems(params: dict) -> list[str]:
    """Every row the active profile runs must build a valid experiment config; identical problems of several
    rows are one line naming them all."""
    from spatialflow_repro.rows import active_profile, row_overrides, row_runs_in_profile, trained_rows

    profile = active_profile(params)
    problems = profile_problems(profile)
    try:
        row_overrides("", params, profile)
    except ConfigError as exc:
        problems.append(str(exc))
    if problems:
        return problems  # every row would repeat them
    by_problem: dict[str, list[str]] = {}
    for name, row in trained_rows(params).items():
        if row_runs_in_profile(row, profile):
            problem = row_problem(name, row, params, profile)
            if problem is not None:
                by_problem.setdefault(problem, []).append(f"{row['group']}.{name}")
    return [f"{', '.join(rows)} (profile {profile['name']}): {problem}" for problem, rows in by_problem.items()]


def params_problems(params: Any) -> list[str]:
    """Every problem of a parameters tree (params.yaml merged with Kedro's overrides), one line each."""
    if not isinstance(params, dict):
        return [f"expected a mapping at the top level, got {type(params).__name__}"]
    problems = name_problems(params) or entry_problems(params)
    if problems:
        return problems  # rows that are not well-named and well-formed cannot be resolved
    try:
        return grid_problems(params)
    except ConfigError as exc:  # no such profile, or a profile that is not well-formed
        return [str(exc).removeprefix("params.yaml: ")]


def check_params(params: Any, source: str = "params.yaml") -> None:
    """Raise :class:`ParamsError` (one line per problem, each starting with ``source``) if any."""
    problems = params_problems(params)
    if problems:
        raise ParamsError([f"{source}: {problem}" for problem in problems])


def check_params_file(path: str | Path) -> dict:
    """Read params.yaml strictly (alias bombs, keys given twice refused) and check its grid; returns it."""
    from spatialflow.utils.yaml_io import read_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the project root)")
    params = read_yaml(path)
    check_params(params, str(path.name) if path.parent.resolve() == Path.cwd().resolve() else str(path))
    return params


def main(argv: list[str] | None = None) -> int:
    """``python -m spatialflow_repro check-params [PATH]``: 0 and ``PATH: ok``, or 2 and one line per problem
    (``check-params: error: ...``) on stderr."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m spatialflow_repro check-params",
                                     description="Check params.yaml's experiment grid before dvc repro.")
    parser.add_argument("path", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        check_params_file(args.path)
    except SpatialFlowError as error:
        for line in str(error).splitlines():
            print(f"check-params: error: {line}", file=sys.stderr)
        return 2
    print(f"{args.path}: ok")
    return 0
