"""The real profiles carry the paper's hyper-parameters exactly, as stated in the reference document.

Each expected value is read out of ``spatialflow_repro/reference/spatialflow-reference.md`` (a copy of the
project's reference) by the sentence that states it, so the test fails if either side drifts.
"""

from __future__ import annotations

import re

import pytest
import yaml

from spatialflow.models.config import SpatialFlowConfig
from spatialflow_repro.rows import active_profile, experiment_config, trained_rows


@pytest.fixture(scope="module")
def reference(repo_root) -> str:
    return (repo_root / "src/spatialflow_repro/reference/spatialflow-reference.md").read_text()


@pytest.fixture(scope="module")
def params(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


def _find(pattern: str, text: str) -> re.Match:
    match = re.search(pattern, text)
    assert match, f"reference no longer states {pattern!r}"
    return match


def test_coco_schedule_matches_reference(params, reference):
    m = _find(r"COCO: lr ([\d.e-]+), (\d+) epochs, /10 at epochs (\d+) and (\d+), linear warm-up (\d+) iters "
              r"from ratio (\d+\.\d+)", reference)
    schedule = params["profiles"]["coco"]["training"]["schedule"]["coco"]
    assert schedule["lr"] == float(m.group(1)) == 0.005
    assert schedule["unit"] == "epoch" and schedule["length"] == int(m.group(2)) == 20
    assert schedule["decay_steps"] == [int(m.group(3)), int(m.group(4))] == [16, 19]
    assert schedule["warmup_iters"] == int(m.group(5)) == 500
    assert schedule["warmup_ratio"] == float(m.group(6)) == 0.001
    m = _find(r"SGD momentum ([\d.]+), weight decay ([\d.e-]+); batch (\d+) images", reference)
    assert schedule["momentum"] == float(m.group(1)) and schedule["weight_decay"] == float(m.group(2))
    assert schedule["batch_size"] == int(m.group(3)) == 8
    assert schedule["optimizer"] == "sgd"  # "Optimiser: SGD momentum 0.9"


def test_cityscapes_schedule_matches_reference(params, reference):
    m = _find(r"Cityscapes: lr ([\d.e-]+), (\d+) epochs, /10 at (\d+) and (\d+); (\d+)x(\d+) crops after "
              r"random scale (\d+\.\d+)-(\d+\.\d+)", reference)
    schedule = params["profiles"]["cityscapes"]["training"]["schedule"]["cityscapes"]
    assert schedule["lr"] == float(m.group(1)) == 0.0125
    assert schedule["length"] == int(m.group(2)) == 176 and schedule["unit"] == "epoch"
    assert schedule["decay_steps"] == [int(m.group(3)), int(m.group(4))]
    assert schedule["scale_crop"] == {"crop": [int(m.group(5)), int(m.group(6))],
                                      "scale": [float(m.group(7)), float(m.group(8))]}
    assert schedule["batch_size"] == 8 and schedule["warmup_iters"] == 500


def test_coco_image_sizes_and_stuff_loss_weights(params, reference):
    m = _find(r"shorter side (\d+) \(max (\d+)\) or (\d+) \(max (\d+)\)", reference)
    sizes = params["profiles"]["coco"]["training"]["sizes"]
    assert sizes["600"] == [int(m.group(1)), int(m.group(2))] == [600, 1000]
    assert sizes["800"] == [int(m.group(3)), int(m.group(4))] == [800, 1333]
    m = _find(r"lambda = ([\d.]+) on COCO \(Table 1 search\), ([\d.]+) on Cityscapes", reference)
    assert params["profiles"]["coco"]["stuff_loss_weight"] == {"coco": float(m.group(1))} == {"coco": 0.25}
    assert params["profiles"]["cityscapes"]["stuff_loss_weight"] == {"cityscapes": float(m.group(2))}
    assert params["profiles"]["tiny"]["stuff_loss_weight"] == {"coco": "search", "cityscapes": 1.0}
    assert not any("stuff_loss_weight" in row for row in params["rows"].values())  # every row: its dataset's


@pytest.mark.parametrize("profile", ["coco", "cityscapes"])
def test_detection_settings_match_reference(params, reference, profile):
    m = _find(r"Detection: score > ([\d.]+), up to (\d+) candidates per level, per-class NMS IoU ([\d.]+), "
              r"top-(\d+) boxes", reference)
    det = {k: v for k, v in params["profiles"][profile]["inference"]["detection"].items()
           if k not in AUTHORS_DETECTION}  # the authors' code's switches: test_real_profiles_carry_the_authors_switches
    assert det == {"score_thresh": float(m.group(1)), "pre_nms_topk": int(m.group(2)),
                   "nms_thresh": float(m.group(3)), "max_detections": int(m.group(4)), "mask_threshold": 0.5}
    assert det["nms_thresh"] == 0.4 and det["max_detections"] == 100
    _find(r"NMS IoU \*\*0\.4\*\*", reference)  # the mask-head proposals (train NMS): the model's defaults
    train = SpatialFlowConfig()
    assert (train.train_score_thresh, train.train_pre_nms_topk, train.train_nms_thresh,
            train.train_max_proposals) == (float(m.group(1)), int(m.group(2)), 0.4, int(m.group(4)))
    assert "train_max_proposals" not in params["profiles"][profile]["training"]["model"]


def test_merge_thresholds_match_reference(params, reference):
    conf = _find(r"confidence threshold \(COCO ([\d.]+); Cityscapes ([\d.]+)\)", reference)
    overlap = _find(r"overlap threshold \(COCO ([\d.]+); Cityscapes ([\d.]+)\)", reference)
    area = _find(r"stuff area limit\s+\(COCO (\d+); Cityscapes (\d+)\)", reference)
    coco = params["profiles"]["coco"]["inference"]["merge"]["coco"]
    city = params["profiles"]["cityscapes"]["inference"]["merge"]["cityscapes"]
    assert coco == {"score_threshold": float(conf.group(1)), "overlap_threshold": float(overlap.group(1)),
                    "stuff_area_limit": int(area.group(1))} == {"score_threshold": 0.37, "overlap_threshold": 0.37,
                                                                "stuff_area_limit": 4900}
    assert city == {"score_threshold": float(conf.group(2)), "overlap_threshold": float(overlap.group(2)),
                    "stuff_area_limit": int(area.group(2))}


def test_tta_scales_and_finetune_recipe_match_reference(params, reference):
    m = _find(r"scales COCO \((\d+),(\d+)\), \((\d+),(\d+)\), \((\d+),(\d+)\)", reference)
    longs, shorts = [int(m.group(i)) for i in (1, 3, 5)], [int(m.group(i)) for i in (2, 4, 6)]
    assert params["profiles"]["coco"]["inference"]["tta"]["coco"] == {"scales": [list(p) for p in zip(shorts, longs)], "flip": True}
    scales = re.findall(r"\((\d+),(\d+)\)", _find(r"Cityscapes (\(\d+,\d+\)(, )?)+", reference).group(0))
    assert params["profiles"]["cityscapes"]["inference"]["tta"]["cityscapes"]["scales"] == [[int(s), int(l)] for l, s in scales]
    m = _find(r"fine-tune only class-dependent layers for (\d+) epochs at lr ([\d.e-]+)", reference)
    assert params["profiles"]["cityscapes"]["training"]["finetune_from_coco"] == {"length": int(m.group(1)), "lr": float(m.group(2))}


def test_real_profiles_use_paper_backbones_and_channels(params):
    for name in ("coco", "cityscapes"):
        profile = params["profiles"][name]
        assert profile["training"]["backbones"] == {"R50": 50, "R101": 101}
        model = profile["training"]["model"]
        assert model["fpn_channels"] == 256 and model["pretrained_backbone"] is True
        assert "backbone_weights" not in model  # torchvision's ImageNet files, not the tiny stand-in


def test_a_coco_row_resolves_to_the_paper_recipe(params):
    """t4_r101_800 in the coco profile: ResNet-101, 800/1333, lambda 0.25 pinned, the COCO schedule."""
    coco_params = dict(params, profile="coco")
    manifest = {"coco": {"splits": {"train": {"json": "t.json", "png_dir": "t", "image_dir": "ti"},
                                    "val": {"json": "v.json", "png_dir": "v", "image_dir": "vi"}},
                         "num_things": 80, "num_stuff": 53}}
    row = trained_rows(coco_params)["t4_r101_800"]
    cfg = experiment_config("t4_r101_800", row, coco_params, manifest, stuff_loss_weight=0.25, seed=0,
                            run_folder="runs")
    assert cfg["model"]["depth"] == 101 and cfg["model"]["num_things"] == 80 and cfg["model"]["num_stuff"] == 53
    assert cfg["model"]["stuff_loss_weight"] == 0.25 and cfg["model"]["preset"] == "spatialflow"
    assert cfg["data"]["transforms"]["min_size"] == 800 and cfg["data"]["transforms"]["max_size"] == 1333
    assert cfg["train"]["lr"] == 0.005 and cfg["train"]["batch_size"] == 8 and cfg["run"]["device"] == "cuda"
    assert active_profile(coco_params)["stuff_loss_weight"] == {"coco": 0.25}


# The authors' model and inference switches (docs/model.md) in the real profiles, none in tiny.
AUTHORS_MODEL = {"backbone_norm": "frozen_stats", "roi_align_aligned": True, "mask_target": "binary",
                 "stuff_loss_norm": "unpadded", "train_candidate_ranking": "anchor_max"}
AUTHORS_DETECTION = {"candidate_ranking": "anchor_max", "mask_paste": "grid_sample"}


def _cityscapes_manifest() -> dict:
    splits = {"train": {"json": "t.json", "png_dir": "t", "image_dir": "ti"},
              "val": {"json": "v.json", "png_dir": "v", "image_dir": "vi"}}
    return {"cityscapes": {"splits": splits, "num_things": 8, "num_stuff": 11},
            "coco": {"splits": splits, "num_things": 80, "num_stuff": 53}}


@pytest.mark.parametrize("profile", ["coco", "cityscapes"])
def test_real_profiles_carry_the_authors_switches(params, profile):
    model = params["profiles"][profile]["training"]["model"]
    assert {k: model.get(k) for k in AUTHORS_MODEL} == AUTHORS_MODEL
    detection = params["profiles"][profile]["inference"]["detection"]
    assert {k: detection.get(k) for k in AUTHORS_DETECTION} == AUTHORS_DETECTION


def test_tiny_profile_keeps_the_previous_defaults(params):
    """The tiny profile's rows must stay valid: none of the new switches is set there, so every one
    takes its default (the previous behaviour, tests/spatialflow/models/test_model_switches.py)."""
    tiny = params["profiles"]["tiny"]
    assert not set(AUTHORS_MODEL) & set(tiny["training"]["model"])
    assert not set(AUTHORS_DETECTION) & set(tiny["inference"]["detection"])
    manifest = _cityscapes_manifest()
    row = trained_rows(params)["t7_r101_coco"]
    cfg = experiment_config("t7_r101_coco", row, dict(params, profile="tiny"), manifest, stuff_loss_weight=1.0, seed=0,
                            run_folder="runs")
    assert "stuff_head_dcn" not in cfg["model"]


def test_table7_coco_m_row_uses_the_stuff_head_dcn_in_the_cityscapes_profile(params):
    """Table 7 "-COCO-M" (supplement 6.1: stuff convs deformable "as UPSNet does"): the stuff head's convs,
    only for that row; the plain Cityscapes rows keep plain stuff heads."""
    city = dict(params, profile="cityscapes")
    rows = trained_rows(city)
    manifest = _cityscapes_manifest()
    coco_m = experiment_config("t7_r101_coco", rows["t7_r101_coco"], city, manifest, stuff_loss_weight=1.0, seed=0,
                               run_folder="runs")
    assert coco_m["model"]["stuff_head_dcn"] is True
    assert coco_m["model"]["preset"] == "spatialflow"  # no sub-network DCN (that is Table 6's eq. 6)
    assert {k: coco_m["model"][k] for k in AUTHORS_MODEL} == AUTHORS_MODEL
    plain = experiment_config("t7_r101", rows["t7_r101"], city, manifest, stuff_loss_weight=1.0, seed=0,
                              run_folder="runs")
    assert "stuff_head_dcn" not in plain["model"]
    from spatialflow.models.config import model_config
    preset = coco_m["model"].pop("preset")
    assert model_config(preset, **coco_m["model"]).stuff_head_dcn is True


def test_every_row_of_every_profile_passes_the_config_bounds(params):
    """The image-size and schedule bounds of ExperimentConfig sit above every recipe of params.yaml."""
    from spatialflow.engine.config import load_experiment_config
    from spatialflow_repro.rows import row_runs_in_profile

    checked = 0
    for profile in params["profiles"]:
        chosen = dict(params, profile=profile)
        for name, row in trained_rows(chosen).items():
            if not row_runs_in_profile(row, active_profile(chosen)):
                continue
            init = "coco.pt" if row.get("init_from") else None
            cfg = experiment_config(name, row, chosen, _cityscapes_manifest(), stuff_loss_weight=1.0, seed=0,
                                    run_folder="runs",
                                    init_checkpoint=init)
            load_experiment_config(cfg)
            checked += 1
    assert checked >= 3 * 10
