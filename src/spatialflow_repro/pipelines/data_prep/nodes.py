"""Prepare every dataset the active profile uses and describe it in one manifest.

The manifest (``data/03_primary/datasets.json``) is what training rows read: split paths, class counts
and a fingerprint of the annotations, so that rows retrain when the data changes.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from spatialflow.data.categories import CategoryMap
from spatialflow.data.coco_panoptic import SplitPaths, load_panoptic_json
from spatialflow.errors import ConfigError, DataError
from spatialflow_repro.rows import active_profile

log = logging.getLogger(__name__)

# COCO's official file names under data/01_raw/coco (README "Real data").
COCO_TEST_DEV_INFO = "annotations/image_info_test-dev2017.json"
COCO_TEST_DEV_IMAGES = "test2017"


def _fingerprint(paths: list[Path]) -> str:
    digest = hashlib.md5()
    for path in paths:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _split_entry(paths: SplitPaths) -> dict:
    return {
        "json": str(paths.json_path),
        "png_dir": None if paths.png_dir is None else str(paths.png_dir),
        "image_dir": None if paths.image_dir is None else str(paths.image_dir),
    }


def _describe(splits: dict[str, SplitPaths], categories_json: Path, kind: str) -> dict:
    categories = CategoryMap.from_categories(load_panoptic_json(categories_json)["categories"])
    return {
        "kind": kind,
        "splits": {role: _split_entry(paths) for role, paths in splits.items()},
        "num_things": categories.num_things,
        "num_stuff": categories.num_stuff,
        "fingerprint": _fingerprint(sorted({Path(p.json_path) for p in splits.values()})),
    }


def prepare_synthetic(spec: dict) -> dict:
    """Generate a synthetic dataset (``spatialflow generate-synthetic``) where the profile asks for it."""
    from spatialflow.data.synthetic import generate_synthetic

    written = generate_synthetic(
        spec["root"],
        preset=spec["preset"],
        num_train=int(spec["num_train"]),
        num_val=int(spec["num_val"]),
        num_test=int(spec["num_test"]),
        seed=int(spec.get("seed", 0)),
        size=tuple(spec["image_size"]),
        object_scale=float(spec.get("object_scale", 1.0)),
    )
    splits = {role: written[name] for role, name in spec["splits"].items()}
    return _describe(splits, Path(splits["val"].json_path), "synthetic")


def prepare_coco(spec: dict) -> dict:
    """Check the COCO layout under ``spec['root']``; test-dev has images and no panoptic ground truth."""
    root = Path(spec["root"])
    splits: dict[str, SplitPaths] = {}
    for role, name in spec["splits"].items():
        if role == "test" and name.startswith("test-dev"):
            info = root / COCO_TEST_DEV_INFO
            splits[role] = SplitPaths(json_path=info, png_dir=None, image_dir=root / COCO_TEST_DEV_IMAGES)
        else:
            splits[role] = SplitPaths(
                json_path=root / "annotations" / f"panoptic_{name}.json",
                png_dir=root / "annotations" / f"panoptic_{name}",
                image_dir=root / name,
            )
    for role, paths in splits.items():
        for path in (paths.json_path, paths.png_dir, paths.image_dir):
            if path is not None and not Path(path).exists():
                raise DataError(path, f"missing ({role} split of COCO; see README 'Real data' for the layout)")
    return _describe(splits, Path(splits["val"].json_path), "coco")


def prepare_cityscapes(spec: dict) -> dict:
    """Convert the official Cityscapes layout (``spec['root']``) to COCO-panoptic under ``spec['converted']``
    with cityscapesscripts (once per split)."""
    from spatialflow.data.cityscapes import convert_cityscapes

    names = sorted(set(spec["splits"].values()))
    converted = convert_cityscapes(spec["root"], spec["converted"], splits=names)
    splits = {role: converted[name] for role, name in spec["splits"].items()}
    return _describe(splits, Path(splits["val"].json_path), "cityscapes")


PREPARERS = {"synthetic": prepare_synthetic, "coco": prepare_coco, "cityscapes": prepare_cityscapes}


def prepare_datasets(params: dict) -> dict:
    """Prepare each dataset of the active profile; returns the manifest ``{dataset: description}``."""
    profile = active_profile(params)
    manifest = {"profile": profile["name"]}
    for name, spec in profile["datasets"].items():
        kind = spec["kind"]
        if kind not in PREPARERS:
            raise DataError("params.yaml", f"profiles.{profile['name']}.datasets.{name}.kind {kind!r} is not one of {sorted(PREPARERS)}")
        log.info("preparing dataset %s (%s)", name, kind)
        manifest[name] = PREPARERS[kind](spec)
    return manifest


def pretrain_backbone(name: str, params: dict) -> dict:
    """The tiny profile's ImageNet stand-in for one ResNet depth (``pretrain_backbones.<name>``).

    Writes the weights where the active profile's ``training.model.backbone_weights`` expects them; a
    profile that does not use this depth (or uses torchvision's ImageNet files) skips the work.
    """
    from spatialflow.engine.pretrain import PretrainConfig, pretrain_backbone as run_pretraining

    spec = (params.get("pretrain_backbones") or {}).get(name)
    if spec is None:
        raise ConfigError(f"params.yaml: pretrain_backbones has no entry {name!r}")
    profile = active_profile(params)
    training = profile.get("training") or {}
    model = training.get("model") or {}
    cfg = PretrainConfig(**spec, width=int(model.get("backbone_width", 64)))  # the width the rows train
    template = model.get("backbone_weights")
    depths = {int(d) for d in (training.get("backbones") or {}).values()}
    if not template or cfg.depth not in depths:
        return {"name": name, "depth": cfg.depth, "skipped": f"profile {profile['name']} does not use it"}
    out = Path(str(template).format(depth=cfg.depth))
    log.info("pretraining ResNet-%d on synthetic scenes -> %s", cfg.depth, out)
    return {"name": name, **run_pretraining(cfg, out), "config": {**spec, "width": cfg.width}}
