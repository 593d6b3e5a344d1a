"""Experiment config: validation with clear errors, YAML round trip."""

from __future__ import annotations

import pytest

from spatialflow.engine.config import experiment_to_dict, experiment_to_yaml, load_experiment_config
from spatialflow.errors import ConfigError

COCO_ROW = {
    "name": "table2/spatialflow",
    "output_dir": "data/06_models/table2/spatialflow",
    "model": {"preset": "spatialflow", "depth": 50},
    "data": {"train": {"json": "a.json", "png_dir": "a", "image_dir": "img"},
             "transforms": {"min_size": 800, "max_size": 1333}},
    "train": {"lr": 5e-3, "batch_size": 8, "unit": "epoch", "length": 20, "decay_steps": [16, 19],
              "amp": "bf16", "finetune": {"trainable": ["cls_head.*"], "length": 2, "lr": 2.5e-3}},
}


def test_defaults_are_the_paper_recipe():
    cfg = load_experiment_config({"model": {"preset": "spatialflow"}})
    t = cfg.train
    assert (t.lr, t.momentum, t.weight_decay, t.batch_size) == (5e-3, 0.9, 1e-4, 8)
    assert (t.unit, t.length, t.decay_steps, t.gamma) == ("epoch", 20, [16, 19], 0.1)
    assert (t.warmup_iters, t.warmup_ratio) == (500, 0.001)


def test_yaml_round_trip(tmp_path):
    cfg = load_experiment_config(COCO_ROW)
    path = tmp_path / "row.yaml"
    path.write_text(experiment_to_yaml(cfg))
    again = load_experiment_config(path)
    assert experiment_to_dict(again) == experiment_to_dict(cfg)
    assert again.train.finetune.trainable == ["cls_head.*"] and again.data.train.png_dir == "a"


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"lr": 0.1, "epochs": 3}}, r"train.epochs: unknown key"),
    ({"train": {"unit": "week"}}, "train.unit: Input should be 'epoch' or 'iteration', got 'week'"),
    ({"train": {"length": 10, "decay_steps": [16]}}, "train.decay_steps: must be increasing and within"),
    ({"train": {"amp": "fp8"}}, "train.amp: Input should be 'none', 'bf16' or 'fp16'"),
    ({"train": {"batch_size": 0}}, "train.batch_size: Input should be greater than or equal to 1, got 0"),
    ({"data": {"train": {"json": "x.json"}}}, "data.train.image_dir: required key missing"),
    ({"model": {"depth": 50}}, "'preset'"),
    ({"trian": {}}, r"trian: unknown key"),
])
def test_invalid_configs_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment_config({"model": {"preset": "spatialflow"}, **change})


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_experiment_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: 0.1, unit: week}\nmodel: {preset: x}\n")
    with pytest.raises(ConfigError, match="bad.yaml: train.unit"):  # the first error of the file
        load_experiment_config(bad)


def test_the_cityscapes_scale_crop_recipe_reaches_the_transforms():
    """Regression: the typed ScaleCropConfig (not a dict) must drive RandomScaleCrop."""
    from spatialflow.data.transforms import RandomHorizontalFlip, RandomScaleCrop
    from spatialflow.engine.trainer import build_transforms

    cfg = load_experiment_config({"model": {"preset": "baseline"}, "data": {"transforms": {
        "min_size": 64, "max_size": 128, "flip": 0.5, "scale_crop": {"scale": [0.5, 2.0], "crop": [64, 128]}}}})
    steps = build_transforms(cfg, train=True).transforms
    assert isinstance(steps[0], RandomScaleCrop) and isinstance(steps[1], RandomHorizontalFlip)
    assert steps[0].scale == (0.5, 2.0) and steps[0].crop == (64, 128)
    with pytest.raises(ConfigError, match="data.transforms.scale_crop.crop.0"):
        load_experiment_config({"model": {"preset": "baseline"}, "data": {"transforms": {
            "scale_crop": {"scale": [0.5, 2.0], "crop": [0, 128]}}}})
