"""``profiles.<p>.training.row_overrides``: Table 6's multi-scale range and fp16 reach only the T6 row."""

from __future__ import annotations

import copy

import pytest
import yaml

from spatialflow.engine.config import load_experiment_config
from spatialflow.errors import ConfigError
from spatialflow_repro.rows import active_profile, describe_row, experiment_config, row_overrides, trained_rows, training_cost

SPLITS = {"train": {"json": "t.json", "png_dir": "t", "image_dir": "ti"},
          "val": {"json": "v.json", "png_dir": "v", "image_dir": "vi"}}
MANIFEST = {name: {"splits": SPLITS, "num_things": 8, "num_stuff": 5} for name in ("coco", "cityscapes")}


@pytest.fixture(scope="module")
def params(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def _config(params: dict, profile: str, row: str) -> dict:
    chosen = dict(params, profile=profile)
    return experiment_config(row, trained_rows(chosen)[row], chosen, MANIFEST, stuff_loss_weight=0.25, seed=0, run_folder="runs")


def test_coco_t6_trains_with_the_authors_range_1600_and_fp16(params):
    """img_scale=[(1600, 400), (1600, 1400)], multiscale_mode='range', fp16; evaluation stays at 800."""
    cfg = _config(params, "coco", "t6_r101_dcn")
    assert cfg["data"]["transforms"]["min_size_range"] == [400, 1400]
    assert cfg["data"]["transforms"]["max_size"] == 1600 and cfg["data"]["transforms"]["min_size"] == 800
    assert cfg["train"]["amp"] == "fp16"
    typed = load_experiment_config(cfg)  # the engine accepts it
    assert typed.data.transforms.min_size_range == (400, 1400) and typed.train.amp == "fp16"


def test_tiny_t6_range_is_scaled_by_96_over_800(params):
    """400 * 96/800 = 48, 1400 * 96/800 = 168, 1600 * 96/800 = 192; no fp16 on the CPU."""
    cfg = _config(params, "tiny", "t6_r101_dcn")
    assert cfg["data"]["transforms"]["min_size_range"] == [48, 168]
    assert cfg["data"]["transforms"]["max_size"] == 192 and cfg["data"]["transforms"]["min_size"] == 96
    assert cfg["train"]["amp"] == "none"
    assert load_experiment_config(cfg).data.transforms.min_size_range == (48, 168)


def test_tiny_t6_has_a_schedule_of_its_own_and_says_so(params):
    """3600 iterations, decays at 80 / 95 % (2880, 3420); every other key is the profile's COCO-like
    schedule; the row's description (the tables' "ran") names the range and the length."""
    cfg = _config(params, "tiny", "t6_r101_dcn")
    profile_schedule = params["profiles"]["tiny"]["training"]["schedule"]["coco"]
    assert cfg["train"]["length"] == 3600 and cfg["train"]["decay_steps"] == [2880, 3420]
    assert {k: v for k, v in cfg["train"].items() if k not in ("length", "decay_steps", "seed", "amp", "cpu_threads")} == \
        {k: v for k, v in profile_schedule.items() if k not in ("length", "decay_steps")}
    assert load_experiment_config(cfg).train.length == 3600
    tiny = dict(params, profile="tiny")
    profile = active_profile(tiny)
    row = trained_rows(tiny)["t6_r101_dcn"]
    assert describe_row(row, profile, row_overrides("t6_r101_dcn", tiny, profile)).startswith(
        "ResNet-34, DCN, shorter side 48-168 px (max 192), shapes-coco, 3600 iterations -- ")
    # the cost that orders work: seeds x length x area x depth x 3 (DCN) = 1 x 3600 x 168 x 192 x 34 x 3
    assert training_cost("t6_r101_dcn", tiny) == 3600 * 168 * 192 * 34 * 3
    assert _config(params, "tiny", "t4_r101_800")["train"]["length"] == profile_schedule["length"] == 1200


@pytest.mark.parametrize("profile, row, short, longest", [
    ("coco", "t4_r101_800", 800, 1333), ("coco", "t2_baseline", 800, 1333), ("tiny", "t4_r101_800", 96, 128)])
def test_other_rows_are_unaffected(params, profile, row, short, longest, monkeypatch):
    from spatialflow.engine import precision

    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    cfg = _config(params, profile, row)
    assert cfg["data"]["transforms"] == {"min_size": short, "max_size": longest, "flip": 0.5, "scale_crop": None}
    assert cfg["train"]["amp"] == {"coco": "none", "tiny": "bf16"}[profile]  # the profile's training.amp


def test_tiny_rows_train_in_bfloat16_only_where_the_cpu_has_it(params, monkeypatch):
    """training.amp: bf16_if_native resolves before the identity is written: it names what trained."""
    from spatialflow.engine import precision

    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)
    assert _config(params, "tiny", "t2_baseline")["train"]["amp"] == "none"
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: True)
    assert _config(params, "tiny", "t2_baseline")["train"]["amp"] == "bf16"
    assert _config(params, "tiny", "t6_r101_dcn")["train"]["amp"] == "none"  # the row's override wins


def test_every_tiny_row_trains_on_one_thread_and_gpu_rows_leave_it_to_cuda(params, monkeypatch):
    """training.cpu_threads is identity: the tiny rows' configs say 1 whatever this process has; a GPU
    profile's stays null; a CPU profile without the key records the count the process has."""
    from spatialflow.engine import precision

    monkeypatch.setattr(precision.torch, "get_num_threads", lambda: 5)
    assert {_config(params, "tiny", row)["train"]["cpu_threads"] for row in ("t2_baseline", "t6_r101_dcn",
                                                                              "t1_lambda_0_50", "t7_r101")} == {1}
    assert _config(params, "coco", "t2_baseline")["train"]["cpu_threads"] is None
    unset = copy.deepcopy(params)
    del unset["profiles"]["tiny"]["training"]["cpu_threads"]
    assert _config(unset, "tiny", "t2_baseline")["train"]["cpu_threads"] == 5


def test_cityscapes_profile_overrides_only_the_7m_model(params):
    assert params["profiles"]["cityscapes"]["training"]["row_overrides"] == {
        "t7_r101_coco": {"model": {"stuff_head_dcn": True}}}
    cfg = _config(params, "cityscapes", "t7_r101")
    assert "min_size_range" not in cfg["data"]["transforms"] and cfg["train"]["amp"] == "none"
    assert "stuff_head_dcn" not in cfg["model"]


def test_model_override_is_a_mapping(params):
    bad = copy.deepcopy(params)
    bad["profiles"]["cityscapes"]["training"]["row_overrides"] = {"t7_r101_coco": {"model": True}}
    bad["profile"] = "cityscapes"
    with pytest.raises(ConfigError, match=r"row_overrides\.t7_r101_coco\.model: must be a mapping"):
        _config(bad, "cityscapes", "t7_r101")


@pytest.mark.parametrize("overrides, message", [
    ({"t6_r101_dnc": {"amp": "fp16"}}, "profiles.coco.training.row_overrides.t6_r101_dnc: not a trained row"),
    ({"t6_r101_dcn": {"min_size_rnage": [1, 2]}},
     "profiles.coco.training.row_overrides.t6_r101_dcn.min_size_rnage: unknown key"),
    ({"t6_r101_dcn": {"schedule": {"lenght": 10}}},
     "profiles.coco.training.row_overrides.t6_r101_dcn.schedule.lenght: not a key of the row's schedule"),
    ({"t6_r101_dcn": {"schedule": 2400}},
     "profiles.coco.training.row_overrides.t6_r101_dcn.schedule: must be a mapping of schedule keys"),
])
def test_a_bad_override_is_one_line_naming_its_key(params, overrides, message):
    bad = copy.deepcopy(params)
    bad["profiles"]["coco"]["training"]["row_overrides"] = overrides
    with pytest.raises(ConfigError) as err:
        _config(bad, "coco", "t4_r101_800")  # any row: a typo anywhere in the block is caught
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
