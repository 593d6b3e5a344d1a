"""The authors' mask-branch, BatchNorm, candidate, stuff-loss and stuff-DCN switches: hand-computed
expectations for each, and proof that their defaults keep the previous model."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import roi_align

from spatialflow.errors import ConfigError
from spatialflow.models.config import InferenceConfig, model_config
from spatialflow.models.detection import Detections, box_coder, select_candidates
from spatialflow.models.heads import StuffHead, aligned_multiscale_roi_align, mask_roi_levels
from spatialflow.models.losses import binary_mask_targets, stuff_loss
from spatialflow.models.spatialflow import SpatialFlow, paste_masks_grid_sample
from test_model_architecture import _target, bottleneck_resnet_params

torch.set_num_threads(1)

# ----------------------------------------------------------------------------- defaults = previous model
# The tiny profile's model settings (params.yaml profiles.tiny.training.model, ResNet-18 for "R50").
TINY = dict(depth=18, fpn_channels=64, stuff_channels=32, mask_channels=64, stuff_groups=8,
            anchor_octave_base_scale=2.0, train_max_proposals=8, num_things=3, num_stuff=2, stuff_loss_weight=0.5)
# The values every new switch had implicitly before it existed.
OLD_VALUES = dict(backbone_norm="frozen", stuff_head_dcn=False, roi_align_aligned=False, mask_target="soft",
                  stuff_loss_norm="labelled", train_candidate_ranking="pair")
def _losses_and_eval(preset: str, inference: dict | None = None, **overrides):
    torch.manual_seed(0)
    model = SpatialFlow(model_config(preset, **TINY, **overrides), inference=inference).train()
    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 50, 45, generator=g)]
    targets = [_target(64, 80, [[8, 10, 40, 50]], [1]), _target(50, 45, [[5, 5, 30, 40], [20, 2, 44, 20]], [0, 2])]
    losses = {k: float(v.detach()).hex() for k, v in model(images, targets).items()}
    model.eval()
    torch.nn.init.zeros_(model.cls_head.conv.bias)
    with torch.no_grad():
        outputs = model(images)
    summary = [(o["boxes"].shape[0], float(o["scores"].sum()).hex(), int(o["masks"].sum()),
                int(o["panoptic"].panoptic_ids.sum())) for o in outputs]
    return losses, summary


@pytest.mark.parametrize("preset", ["baseline", "spatialflow"])
def test_defaults_are_the_previous_model_bit_for_bit(preset):
    """The defaults and the old behaviour set explicitly give the same losses and outputs, bit for bit, on
    this machine (float results differ in the last bits between CPU kinds, so nothing recorded elsewhere)."""
    losses, summary = _losses_and_eval(preset)
    assert set(losses) == {"cls", "reg", "mask", "stuff", "total"}
    assert all(math.isfinite(float.fromhex(v)) and float.fromhex(v) > 0 for v in losses.values())
    assert [n for n, *_ in summary] == [100, 100]  # max_detections on each image
    old = _losses_and_eval(preset, {"candidate_ranking": "pair", "mask_paste": "legacy"}, **OLD_VALUES)
    assert old == (losses, summary)


def test_authors_switches_change_the_losses():
    authors = dict(backbone_norm="frozen_stats", roi_align_aligned=True, mask_target="binary",
                   stuff_loss_norm="unpadded", train_candidate_ranking="anchor_max")
    losses, _ = _losses_and_eval("spatialflow", {"candidate_ranking": "anchor_max", "mask_paste": "grid_sample"},
                                 **authors)
    defaults, _ = _losses_and_eval("spatialflow")
    assert losses["mask"] != defaults["mask"]
    assert losses["stuff"] != defaults["stuff"]


@pytest.mark.parametrize("key, value", [("backbone_norm", "sync"), ("mask_target", "hard"),
                                        ("stuff_loss_norm", "all"), ("train_candidate_ranking", "x"),
                                        ("stuff_head_dcn", "yes")])
def test_bad_switch_values_name_their_key(key, value):
    with pytest.raises(ConfigError, match=f"model.{key}"):
        model_config("spatialflow", **{key: value})


def test_bad_inference_switch_names_its_key():
    with pytest.raises(ConfigError, match="inference.candidate_ranking"):
        InferenceConfig(candidate_ranking="class")
    with pytest.raises(ConfigError, match="inference.mask_paste"):
        InferenceConfig(mask_paste="nearest")


# ----------------------------------------------------------------------------- item 4: mask branch
def test_aligned_roi_align_samples_half_a_pixel_earlier_on_a_known_box():
    """Feature value = its x index; a box 16..48 px at stride 8 covers feature x 2..6 (14 bins of 4/14).
    aligned=True shifts the box by -0.5 feature pixel: bin centres 1.5 + (i + 0.5) * 4 / 14."""
    p3 = torch.arange(16.0).expand(1, 1, 16, 16).contiguous()
    p4, p5 = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)
    box = torch.tensor([[16.0, 16.0, 48.0, 48.0]])
    out = aligned_multiscale_roi_align([p3, p4, p5], [box], (128, 128), 14)
    expected = torch.tensor([1.5 + (i + 0.5) * 4 / 14 for i in range(14)])
    assert torch.allclose(out[0, 0, 5], expected, atol=1e-5)
    legacy = roi_align(p3, torch.tensor([[0.0, 16, 16, 48, 48]]), 14, spatial_scale=1 / 8, sampling_ratio=0)
    assert torch.allclose(legacy[0, 0, 5], expected + 0.5, atol=1e-5)  # aligned=False: no half-pixel shift


def test_mask_roi_levels_are_mmdets():
    boxes = torch.tensor([[0, 0, 111, 111], [0, 0, 112, 112], [0, 0, 223, 223], [0, 0, 224, 224],
                          [0, 0, 1000, 1000], [0, 0, 8, 8]], dtype=torch.float32)
    assert mask_roi_levels(boxes, 3).tolist() == [0, 1, 1, 2, 2, 0]


def test_binarised_mask_targets_by_hand():
    """GT 8x8 with ones in columns 0..3; box x 1..9 into 4 bins. aligned=True samples x = 1, 2 | 3, 4 | 5, 6 |
    7, 8 -> soft 1, 0.5, 0, 0 -> binarised at >= 0.5: 1, 1, 0, 0. (torchvision's aligned=False soft target
    samples 1.5, 2.5 | 3.5, 4.5 | ...: 1, 0.25, 0, 0.)"""
    gt = torch.zeros(1, 8, 8)
    gt[:, :, :4] = 1
    box = torch.tensor([[1.0, 0.0, 9.0, 8.0]])
    targets = binary_mask_targets(gt, box, torch.tensor([0]), 4)
    assert targets.shape == (1, 4, 4)
    assert torch.equal(targets[0], torch.tensor([[1.0, 1.0, 0.0, 0.0]]).expand(4, 4))
    soft = roi_align(gt[:, None], torch.tensor([[0.0, 1, 0, 9, 8]]), (4, 4), 1.0)[0, 0]
    assert torch.allclose(soft[1], torch.tensor([1.0, 0.25, 0.0, 0.0]))


def test_grid_sample_paste_by_hand():
    """A 2x2 mask [[0, 1], [0, 1]] in box 0..4 of a 4x4 image: pixel centres x + 0.5 fall at mask
    coordinates -0.25, 0.25, 0.75, 1.25 (zeros outside): columns 0, 0.25, 0.75, 0.75, rows scaled by
    0.75, 1, 1, 0.75 (the half pixel of zero padding at the top and bottom edge)."""
    mask = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    out = paste_masks_grid_sample(mask, torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (4, 4))
    expected = torch.tensor([0.75, 1, 1, 0.75])[:, None] * torch.tensor([0.0, 0.25, 0.75, 0.75])[None]
    assert torch.allclose(out[0], expected)
    outside = paste_masks_grid_sample(torch.ones(1, 2, 2), torch.tensor([[0.0, 0.0, 2.0, 2.0]]), (4, 4))
    assert outside[0, 3].abs().sum() == 0 and outside[0, :, 3].abs().sum() == 0 and outside[0, 1, 1] == 1


# ----------------------------------------------------------------------------- item 5: candidates
def test_anchor_max_ranking_by_hand():
    """3 anchors x 2 classes, top-2 per level, threshold 0.05:
    anchor 0: [0.9, 0.1]   anchor 1: [0.6, 0.65]   anchor 2: [0.7, 0.02]
    "pair": the 2 best pairs, (0, c0) 0.9 and (2, c0) 0.7.
    "anchor_max": anchors 0 (max 0.9) and 2 (max 0.7), then every class above 0.05: (0, c0) 0.9,
    (0, c1) 0.1, (2, c0) 0.7; anchor 1 (max 0.65) is out although its class 1 beats (0, c1)."""
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.65], [0.7, 0.02]])
    logits = torch.log(probs / (1 - probs))
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    deltas = torch.zeros(3, 4)

    def run(ranking: str) -> set[tuple[int, int, float]]:
        d: Detections = select_candidates([logits], [deltas], [anchors], (100, 100), box_coder(), 0.05, 2, ranking)
        return {(int(b[0]), int(lab), round(float(s), 4)) for b, lab, s in zip(d.boxes, d.labels, d.scores)}

    assert run("pair") == {(0, 0, 0.9), (40, 0, 0.7)}
    assert run("anchor_max") == {(0, 0, 0.9), (0, 1, 0.1), (40, 0, 0.7)}


# ----------------------------------------------------------------------------- item 7: stuff loss
def test_stuff_loss_normalisations_by_hand():
    """Zero logits: every labelled pixel costs log(3). Image 0 is 4x3 with 2 void pixels (10 labelled),
    image 1 is 2x4 with 1 void pixel (7 labelled), both padded to 4x4 with 255.
    labelled: 17 log 3 / 17 = log 3; unpadded: 17 log 3 / (12 + 8)."""
    target = torch.full((2, 4, 4), 255, dtype=torch.long)
    target[0, :4, :3] = 1
    target[0, 0, :2] = 255
    target[1, :2, :4] = 2
    target[1, 1, 3] = 255
    logits = torch.zeros(2, 3, 4, 4)
    assert math.isclose(float(stuff_loss(logits, target)), math.log(3), rel_tol=1e-6)
    unpadded = stuff_loss(logits, target, [(4, 3), (2, 4)])
    assert math.isclose(float(unpadded), 17 * math.log(3) / 20, rel_tol=1e-6)


# ----------------------------------------------------------------------------- item 3: BatchNorm
def _bn_channels(layers: tuple[int, ...]) -> int:
    """BatchNorm channels of a bottleneck ResNet: stem 64; per block planes + planes + 4 planes; plus the
    downsample BN (4 planes) of each stage's first block."""
    total = 64
    for planes, n in zip((64, 128, 256, 512), layers):
        total += n * 6 * planes + 4 * planes
    return total


def _conv(c_in: int, c_out: int, k: int, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def authors_parameter_count(layers: tuple[int, ...], spatialflow: bool) -> int:
    """What mmdet reports (sum of numel over model.parameters(), frozen ones included) for the authors'
    config at 80 things / 53 + 1 stuff classes, 9 anchors, BN affine as parameters."""
    backbone = bottleneck_resnet_params(layers) + 2 * _bn_channels(layers)
    fpn = sum(_conv(c, 256, 1) for c in (512, 1024, 2048)) + 3 * _conv(256, 256, 3)
    fpn += _conv(2048, 256, 3) + _conv(256, 256, 3)  # P6 from C5 ('on_input'), P7
    towers = 8 * _conv(256, 256, 3)  # reg + cls sub-nets
    if spatialflow:  # stuff 4 + mask 1 sub-net blocks, phi_cls 4, phi_stuff 4, phi_mask 1, psi 1
        towers += 15 * _conv(256, 256, 3)
    heads = _conv(256, 9 * 80, 3) + _conv(256, 9 * 4, 3)
    stuff = 3 * _conv(256, 128, 3, bias=False) + 3 * _conv(128, 128, 3, bias=False) + 6 * 2 * 128 + _conv(128, 54, 1)
    mask = 4 * _conv(256, 256, 3) + _conv(256, 256, 2) + _conv(256, 80, 1)
    return backbone + fpn + towers + heads + stuff + mask


@pytest.mark.parametrize("preset, depth, layers, expected", [
    ("baseline", 50, (3, 4, 6, 3), 41_947_578),
    ("spatialflow", 50, (3, 4, 6, 3), 50_798_778),
    ("spatialflow", 101, (3, 4, 23, 3), 69_790_906),
])
def test_parameter_counts_with_trainable_bn_affine_equal_the_authors(preset, depth, layers, expected):
    assert authors_parameter_count(layers, preset == "spatialflow") == expected
    model = SpatialFlow(model_config(preset, depth=depth, backbone_norm="frozen_stats"))
    assert sum(p.numel() for p in model.parameters()) == expected
    frozen = SpatialFlow(model_config(preset, depth=depth))  # FrozenBatchNorm2d: affine are buffers
    assert expected - sum(p.numel() for p in frozen.parameters()) == 2 * _bn_channels(layers)
    assert 2 * _bn_channels((3, 4, 6, 3)) == 53_120


def test_frozen_stats_trains_affine_but_never_updates_statistics():
    torch.manual_seed(0)
    model = SpatialFlow(model_config("spatialflow", **TINY, backbone_norm="frozen_stats")).train()
    bn3, bn2 = model.backbone.body.layer2[0].bn1, model.backbone.body.layer1[0].bn1
    before = (bn3.running_mean.clone(), bn3.running_var.clone())
    assert not bn3.training and bn3.weight.requires_grad and not bn2.weight.requires_grad  # res2 frozen
    losses = model([torch.rand(3, 64, 80)], [_target(64, 80, [[8, 10, 40, 50]], [1])])
    losses["total"].backward()
    assert torch.equal(bn3.running_mean, before[0]) and torch.equal(bn3.running_var, before[1])
    assert bn3.weight.grad is not None and bn3.weight.grad.abs().sum() > 0 and bn2.weight.grad is None


# ----------------------------------------------------------------------------- item 2: stuff-head DCN
def test_stuff_head_dcn_loads_a_plain_head_and_starts_from_it():
    """The deformable convs keep the plain convs' names; zero offsets and a modulation of sigmoid(0) = 0.5
    halve each conv's output, which the following GroupNorm removes: the same logits up to GN's eps."""
    torch.manual_seed(0)
    plain = StuffHead(16, 8, 3, groups=2)
    dcn = StuffHead(16, 8, 3, groups=2, dcn=True)
    result = dcn.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all(".offset." in k for k in result.missing_keys)
    assert len(result.missing_keys) == 2 * 6  # 6 convs x (offset weight, offset bias)
    feats = [torch.randn(1, 16, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 16, 4, 4)]
    assert torch.allclose(plain(feats), dcn(feats), atol=1e-3)
    assert not torch.allclose(plain(feats), 2 * dcn(feats), atol=1e-1)  # not trivially equal
    model = SpatialFlow(model_config("spatialflow", **TINY, stuff_head_dcn=True))
    assert "stuff_head.levels.2.4.offset.weight" in dict(model.named_parameters())
