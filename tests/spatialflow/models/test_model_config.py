"""SpatialFlowConfig, the Table 2 presets and their validation."""

from __future__ import annotations

import json
import re

import pytest

from spatialflow.errors import ConfigError
from spatialflow.models.config import (
    PRESETS,
    InferenceConfig,
    SpatialFlowConfig,
    config_from_dict,
    config_to_dict,
    inference_config,
    model_config,
)
from spatialflow.panoptic.merge import MergeConfig

SWITCHES = ["subnets", "flow_reg_cls", "flow_reg_stuff", "flow_reg_mask", "flow_stuff_mask", "dcn"]


def test_presets_are_cumulative_like_table_2():
    order = ["baseline", "+subnets", "+reg_cls", "+reg_stuff", "+reg_mask", "spatialflow", "spatialflow_dcn"]
    assert list(PRESETS) == order
    for k, name in enumerate(order):
        cfg = model_config(name)
        # row k switches on exactly the first k components, in the order of the table
        assert [getattr(cfg, s) for s in SWITCHES] == [i < k for i in range(len(SWITCHES))]


def test_paper_defaults():
    cfg = model_config()
    assert (cfg.depth, cfg.fpn_channels, cfg.stuff_channels, cfg.num_things, cfg.num_stuff) == (50, 256, 128, 80, 53)
    assert (cfg.stuff_loss_weight, cfg.train_nms_thresh, cfg.train_max_proposals) == (0.25, 0.4, 100)
    assert cfg.num_anchors == 9  # 3 scales x 3 ratios
    assert cfg.pretrained_backbone is False


def test_inference_settings_are_not_part_of_the_model_config():
    """mmdetection's train_cfg / test_cfg split: evaluating differently never changes the trained network."""
    test = InferenceConfig()
    assert (test.score_thresh, test.pre_nms_topk, test.nms_thresh, test.max_detections) == (0.05, 1000, 0.4, 100)
    assert test.mask_threshold == 0.5 and test.merge == MergeConfig()
    for name in ("nms_thresh", "max_detections", "mask_threshold", "merge", "score_thresh"):
        with pytest.raises(ConfigError, match="unknown model config field"):
            model_config("spatialflow", **{name: getattr(test, name)})


@pytest.mark.parametrize(("values", "message"), [
    ({"nms_thresh": 1.5}, "inference.nms_thresh: must lie in [0, 1], got 1.5"),
    ({"max_detections": 0}, "inference.max_detections: must be an integer >= 1, got 0"),
    ({"max_detections": 2.5}, "inference.max_detections: must be an integer >= 1, got 2.5"),
    ({"merge": {"score_threshold": -0.1}}, "inference.merge.score_threshold: must lie in [0, 1], got -0.1"),
    ({"merge": {"nonsense": 1}}, "unknown merge config field"),
    ({"nonsense": 1}, "inference: unknown key(s) ['nonsense']"),
])
def test_bad_inference_settings_are_one_line(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        inference_config(values)


@pytest.mark.parametrize("flow", ["flow_reg_stuff", "flow_reg_mask", "flow_stuff_mask"])
def test_flow_without_subnets_is_a_config_error(flow):
    with pytest.raises(ConfigError, match="subnets"):
        model_config("baseline", **{flow: True})


def test_reg_cls_flow_needs_no_subnets():
    cfg = model_config("baseline", flow_reg_cls=True)
    assert cfg.flow_reg_cls and not cfg.subnets


def test_dcn_needs_the_reg_flows():
    with pytest.raises(ConfigError, match="dcn"):
        model_config("+subnets", dcn=True)


@pytest.mark.parametrize(
    "overrides",
    [{"depth": 152}, {"fpn_channels": 0}, {"stuff_channels": 48}, {"train_nms_thresh": 1.5},
     {"stuff_loss_weight": -1.0}, {"bg_iou_thresh": 0.6}, {"nonsense_field": 1}, {"fpn_channels": 64.0},
     {"stuff_loss_weight": "abc"}, {"anchor_octave_base_scale": 0}],
)
def test_nonsense_is_a_config_error(overrides):
    with pytest.raises(ConfigError):
        model_config("spatialflow", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown model preset"):
        model_config("retinanet")


def test_dict_round_trip_is_json_serialisable():
    cfg = model_config("spatialflow_dcn", depth=18, num_things=3, backbone_weights="w.pt")
    d = json.loads(json.dumps(config_to_dict(cfg)))
    back = config_from_dict(d)
    assert back == cfg and back.backbone_weights == "w.pt"
    assert back.anchor_ratios == (0.5, 1.0, 2.0)
    with pytest.raises(ConfigError):
        config_from_dict({**d, "extra": 1})


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError):
        SpatialFlowConfig(subnets=False)  # default flows are on
