"""The experiment grid of params.yaml: which rows exist, and what one row trains in the active profile.

Pure functions over the parameters dict (no Kedro, no I/O), so that the pipelines, dvc.yaml and the tests
agree on one definition of a row.
"""

from __future__ import annotations

from typing import Any

from spatialflow.errors import ConfigError
from spatialflow.models.config import CLASS_DEPENDENT_PARAMETERS

# Groups of trained rows in params.yaml, in DAG order: Table 1 (the search of the stuff-loss weight) first,
# then the rows that may use its result, then the rows initialised from another row's checkpoint.
TRAINED_ROW_GROUPS = ("search_rows", "rows", "pretrained_rows")
DATASETS = ("coco", "cityscapes")  # the paper's two datasets: what a row's `dataset` names
SEARCH = "search"  # a profile's stuff-loss weight for a dataset: Table 1's best on val
WEIGHT = "stuff_loss_weight"


def trained_rows(params: dict) -> dict[str, dict]:
    """Every trained row of every table, ``{name: row}``, each row with its ``group`` added."""
    rows: dict[str, dict] = {}
    for group in TRAINED_ROW_GROUPS:
        for name, row in (params.get(group) or {}).items():
            if name in rows:
                raise ConfigError(f"params.yaml: row {name!r} appears in {rows[name]['group']} and {group}")
            rows[name] = {**row, "group": group}
    return rows


def testdev_rows(params: dict) -> dict[str, dict]:
    """Trained rows that are also evaluated on test-dev (Tables 5-6), ``{name: settings}``."""
    rows = params.get("testdev_rows") or {}
    unknown = sorted(set(rows) - set(trained_rows(params)))
    if unknown:
        raise ConfigError(f"params.yaml: testdev_rows {unknown} are not trained rows")
    return dict(rows)


def active_profile(params: dict) -> dict:
    """The selected profile's settings, with its ``name``."""
    name = params.get("profile")
    profiles = params.get("profiles") or {}
    if name not in profiles:
        raise ConfigError(f"params.yaml: profile {name!r} is not one of {sorted(profiles)}")
    return {**profiles[name], "name": name}


def row_and_profile(row_name: str, params: dict) -> tuple[dict, dict]:
    """One trained row (with its ``group``) and the active profile."""
    rows = trained_rows(params)
    if row_name not in rows:
        raise ConfigError(f"params.yaml has no trained row {row_name!r}")
    return rows[row_name], active_profile(params)


def skipped_row(row_name: str, row: dict, profile: dict) -> dict:
    """What a node returns for a row that the active profile does not run."""
    return {"row": row_name, "profile": profile["name"], "tables": row["tables"], "skipped":
            f"not run in profile {profile['name']} (tables {profile['tables']}, datasets {sorted(profile['datasets'])})"}


def row_runs_in_profile(row: dict, profile: dict) -> bool:
    """A row runs when one of its tables belongs to the profile and the profile has its dataset."""
    return bool(set(row["tables"]) & set(profile["tables"])) and row["dataset"] in profile["datasets"]


def profile_stuff_loss_weight(profile: dict, dataset: str) -> float | str:
    """``profiles.<p>.stuff_loss_weight.<dataset>``: a number, or ``search`` (Table 1's best on val)."""
    weights = profile.get(WEIGHT) or {}
    if dataset not in weights:
        raise ConfigError(f"profiles.{profile['name']}.{WEIGHT}: has no entry for dataset {dataset!r}")
    return weights[dataset]


def uses_search(row: dict, profile: dict) -> bool:
    """Whether the row trains with Table 1's pick: it sets no weight and its dataset's profile weight is
    ``search``."""
    return WEIGHT not in row and profile_stuff_loss_weight(profile, row["dataset"]) == SEARCH


def row_stuff_loss_weight(row: dict, profile: dict, selected: float | None) -> tuple[float, str]:
    """(weight, where it came from) for one row: the row's number, else the profile's number for the row's
    dataset, else (the profile says ``search``) Table 1's pick ``selected``."""
    if WEIGHT in row:
        return float(row[WEIGHT]), "row"
    value = profile_stuff_loss_weight(profile, row["dataset"])
    if value != SEARCH:
        return float(value), f"profiles.{profile['name']}.{WEIGHT}.{row['dataset']}"
    if selected is None:
        raise ConfigError(f"profiles.{profile['name']}.{WEIGHT}.{row['dataset']} is 'search', but Table 1 has "
                          "not run in this profile (no weight was selected)")
    return float(selected), "Table 1's search"


def row_seeds(name: str, params: dict) -> list[int]:
    """The seeds a row trains: every value of ``seeds.values`` for the rows of ``seeds.rows`` (those a headline
    claim compares), the first value for every other row."""
    seeds = params.get("seeds") or {}
    values = [int(v) for v in seeds.get("values") or [0]]
    return values if name in (seeds.get("rows") or []) else values[:1]


def resolve_size(row: dict, profile: dict) -> tuple[int, int]:
    """(shorter side, max size) this profile trains the paper's image size ``row['size']`` at."""
    sizes = profile["training"].get("sizes") or {}
    if str(row["size"]) not in sizes:
        raise ConfigError(f"profile {profile['name']!r} has no image size {row['size']!r} (sizes: {sorted(sizes)})")
    short, longest = sizes[str(row["size"])]
    return int(short), int(longest)


def resolve_depth(row: dict, profile: dict) -> int:
    backbones = profile["training"].get("backbones") or {}
    if row["backbone"] not in backbones:
        raise ConfigError(f"profile {profile['name']!r} has no backbone {row['backbone']!r}")
    return int(backbones[row["backbone"]])


PAPER_BACKBONES = {"R50": "ResNet-50", "R101": "ResNet-101"}


def row_schedule(row: dict, profile: dict, overrides: dict | None = None) -> dict:
    """The profile's schedule for the row's dataset, with the row's own ``schedule`` keys over it, then the
    ``schedule`` keys of the row's profile overrides (:func:`row_overrides`; e.g. Table 6's tiny row)."""
    schedules = profile["training"].get("schedule") or {}
    if row["dataset"] not in schedules:
        raise ConfigError(f"profiles.{profile['name']}.training.schedule: has no entry for dataset {row['dataset']!r}")
    return {**schedules[row["dataset"]], **(row.get("schedule") or {}), **((overrides or {}).get("schedule") or {})}


def training_cost(name: str, params: dict) -> float:
    """A row's relative training cost in the active profile (for ordering work, longest first; not a time):
    seeds x schedule length x image area x backbone depth, x3 for deformable convolutions (their CPU
    kernel), with the row's size overrides (Table 6's multi-scale range) applied."""
    row, profile = row_and_profile(name, params)
    short, longest = resolve_size(row, profile)
    overrides = row_overrides(name, params, profile)  # checked, as experiment_config applies them
    if overrides.get("min_size_range"):
        short, longest = max(overrides["min_size_range"]), overrides.get("max_size", longest)
    dcn = 3.0 if "dcn" in row["preset"] else 1.0
    return (len(row_seeds(name, params)) * float(row_schedule(row, profile, overrides)["length"]) * short * longest
            * resolve_depth(row, profile) * dcn)


def describe_row(row: dict, profile: dict, overrides: dict | None = None) -> str:
    """One line saying what a row ran and which paper setting it stands for (``overrides``: the row's
    :func:`row_overrides`, e.g. a multi-scale range and a schedule of its own)."""
    depth = resolve_depth(row, profile)
    short, longest = resolve_size(row, profile)
    overrides = overrides or {}
    if overrides.get("min_size_range"):
        low, high = overrides["min_size_range"]
        short, longest = f"{low}-{high}", overrides.get("max_size", longest)
    dataset = profile["datasets"][row["dataset"]]
    data = dataset.get("preset", dataset["kind"])
    schedule = row_schedule(row, profile, overrides)
    paper_size = "Cityscapes crops" if row["size"] == "cityscapes" else f"{row['size']} px"
    extra = ", DCN" if row["preset"] == "spatialflow_dcn" else ""
    if row.get("init_from"):
        extra += f", initialised from {row['init_from']}"
    return (
        f"ResNet-{depth}{extra}, shorter side {short} px (max {longest}), {data}, "
        f"{schedule['length']} {schedule['unit']}s"
        f" -- stands for {PAPER_BACKBONES.get(row['backbone'], row['backbone'])} @ {paper_size} "
        f"on {'COCO' if row['dataset'] == 'coco' else 'Cityscapes'}"
    )


# What ``profiles.<p>.training.row_overrides.<row>`` may change, and where it goes in the experiment config.
# ``model`` is a mapping of model switches merged into the profile's ``training.model`` (Table 7 "-COCO-M").
# ``schedule`` is a mapping of keys of the profile's schedule for the row's dataset (a schedule of its own).
ROW_OVERRIDE_KEYS = {"min_size_range": "transforms", "max_size": "transforms", "amp": "train", "model": "model",
                     "schedule": "train"}


def row_overrides(name: str, params: dict, profile: dict) -> dict[str, Any]:
    """The row's entry of ``profiles.<p>.training.row_overrides`` (``{}`` when none). Every entry is checked:
    a row that is not a trained row or a key outside :data:`ROW_OVERRIDE_KEYS` is a ConfigError naming it."""
    where = f"profiles.{profile['name']}.training.row_overrides"
    overrides = profile["training"].get("row_overrides") or {}
    rows = trained_rows(params)
    for row_name, keys in overrides.items():
        if row_name not in rows:
            raise ConfigError(f"{where}.{row_name}: not a trained row (rows: {', '.join(sorted(rows))})")
        if not isinstance(keys, dict):
            raise ConfigError(f"{where}.{row_name}: must be a mapping of {sorted(ROW_OVERRIDE_KEYS)}, got {keys!r}")
        for key in keys:
            if key not in ROW_OVERRIDE_KEYS:
                raise ConfigError(f"{where}.{row_name}.{key}: unknown key (allowed: {sorted(ROW_OVERRIDE_KEYS)})")
        if not isinstance(keys.get("model", {}), dict):
            raise ConfigError(f"{where}.{row_name}.model: must be a mapping of model switches, got {keys['model']!r}")
        if "schedule" in keys:
            known = (profile["training"].get("schedule") or {}).get(rows[row_name]["dataset"]) or {}
            if not isinstance(keys["schedule"], dict):
                raise ConfigError(f"{where}.{row_name}.schedule: must be a mapping of schedule keys, got "
                                  f"{keys['schedule']!r}")
            for key in keys["schedule"]:
                if key not in known:
                    raise ConfigError(f"{where}.{row_name}.schedule.{key}: not a key of the row's schedule "
                                      f"(keys: {', '.join(sorted(known))})")
    return dict(overrides.get(name) or {})


def experiment_config(
    name: str,
    row: dict,
    params: dict,
    manifest: dict,
    stuff_loss_weight: float,
    seed: int,
    init_checkpoint: str | None = None,
    *,
    run_folder: str,
) -> dict[str, Any]:
    """The ``spatialflow.engine`` experiment config (a dict) of one row and seed in the active profile:
    the training identity (model, data, train) from ``profiles.<p>.training``, the run settings (run)
    from ``profiles.<p>.run``, with the row's ``profiles.<p>.training.row_overrides`` applied (e.g. Table 6's
    multi-scale range and fp16). Inference settings are not part of it (see :func:`inference_settings`).
    The seed trains in ``<run_folder>/seed<seed>`` (the row's folder comes from the catalog).
    The stuff-loss weight is set last, from one place only (:func:`row_stuff_loss_weight`): a weight under
    ``training.model`` or a row override is refused, naming the key."""
    profile = active_profile(params)
    training, run = profile["training"], profile.get("run") or {}
    dataset_name = row["dataset"]
    if dataset_name not in manifest:
        raise ConfigError(f"row {name!r} needs dataset {dataset_name!r}, which the data stage did not prepare")
    dataset = manifest[dataset_name]
    overrides = row_overrides(name, params, profile)
    schedule = row_schedule(row, profile, overrides)
    short, longest = resolve_size(row, profile)
    depth = resolve_depth(row, profile)
    model = {
        "preset": row["preset"],
        "depth": depth,
        "num_things": dataset["num_things"],
        "num_stuff": dataset["num_stuff"],
        **(training.get("model") or {}),
    }
    if WEIGHT in model:
        raise ConfigError(f"profiles.{profile['name']}.training.model.{WEIGHT}: set the stuff-loss weight in "
                          f"profiles.{profile['name']}.{WEIGHT} (per dataset) or on the row, not here")
    if model.get("backbone_weights"):
        model["backbone_weights"] = str(model["backbone_weights"]).format(depth=depth)
    scale_crop = schedule.pop("scale_crop", None)
    transforms = {"min_size": short, "max_size": longest, "flip": 0.5, "scale_crop": scale_crop}
    train = {**schedule, "seed": int(seed), "amp": training.get("amp", "none")}
    for key, value in overrides.items():
        if key == "schedule":
            continue  # in row_schedule above
        if key == "model":
            if WEIGHT in value:
                raise ConfigError(f"profiles.{profile['name']}.training.row_overrides.{name}.model.{WEIGHT}: set "
                                  f"a row's stuff-loss weight on the row (rows.{name}.{WEIGHT}), not here")
            model.update(value)
        else:
            (transforms if ROW_OVERRIDE_KEYS[key] == "transforms" else train)[key] = value
    model[WEIGHT] = float(stuff_loss_weight)
    from spatialflow.engine.precision import resolve_amp, resolve_cpu_threads  # imports torch: only here

    # bf16_if_native: bfloat16 where this machine computes it natively, else float32; cpu_threads: the threads
    # every seed trains with on any route. The resolved values are what the run's identity records
    # (spatialflow.engine.precision)
    device = str(run.get("device", "auto"))
    train["amp"] = resolve_amp(str(train["amp"]), device)
    train["cpu_threads"] = resolve_cpu_threads(training.get("cpu_threads"), device)
    if init_checkpoint is not None:
        train["init_checkpoint"] = init_checkpoint
        if row.get("finetune_class_layers_first"):
            finetune = training.get("finetune_from_coco") or {}
            train["finetune"] = {
                "trainable": list(CLASS_DEPENDENT_PARAMETERS),
                "length": int(finetune["length"]),
                "lr": float(finetune["lr"]),
            }
    return {
        "name": name,
        "model": model,
        "data": {
            **{split: dict(paths) for split, paths in dataset["splits"].items()},
            "transforms": transforms,
        },
        "train": train,
        "run": {
            "num_workers": int(run.get("workers", 0)),
            "device": run.get("device", "auto"),
            "checkpoint_every": int(run.get("checkpoint_every", 1000)),
            "keep_checkpoints": int(run.get("keep_checkpoints", 3)),
            "log_every": int(run.get("log_every", 20)),
        },
        "output_dir": f"{run_folder}/seed{seed}",
    }


def inference_settings(row: dict, profile: dict) -> dict:
    """The row's ``InferenceConfig`` values: the profile's test-time detection settings and its dataset's
    merge thresholds (``profiles.<p>.inference``)."""
    inference = profile.get("inference") or {}
    merges = inference.get("merge") or {}
    if row["dataset"] not in merges:
        raise ConfigError(f"profiles.{profile['name']}.inference.merge: has no entry for dataset {row['dataset']!r}")
    return {**(inference.get("detection") or {}), "merge": dict(merges[row["dataset"]])}


def tta_settings(name: str | None, profile: dict) -> dict | None:
    """A TTA preset of ``profiles.<p>.inference.tta`` (None: single scale)."""
    if name is None:
        return None
    presets = (profile.get("inference") or {}).get("tta") or {}
    if name not in presets:
        raise ConfigError(f"profiles.{profile['name']}.inference.tta: has no preset {name!r} (has {sorted(presets)})")
    return presets[name]
