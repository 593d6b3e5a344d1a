"""SpatialFlow's structure: parameter counts per switch, shapes, gradients, frozen parts, anchors, losses."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from spatialflow.errors import CheckpointError
from spatialflow.models.backbone import ResNetFPN, imagenet_weights_path
from spatialflow.models.config import PRESETS, model_config
from spatialflow.models.detection import BACKGROUND, IGNORED, Anchors, anchors_inside
from spatialflow.models.losses import detection_losses, stuff_loss
from spatialflow.models.spatialflow import SpatialFlow

torch.set_num_threads(1)
CONV3x3_256 = 256 * 256 * 9 + 256  # = 590,080: one 3x3 256->256 conv with bias


def tiny(preset: str = "spatialflow", **kw):
    base = dict(depth=18, fpn_channels=32, stuff_channels=32, mask_channels=32, num_things=3, num_stuff=2)
    return model_config(preset, **{**base, **kw})


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def named_counts(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters()}


def bottleneck_resnet_params(layers=(3, 4, 6, 3)) -> int:
    """Conv weights of a bottleneck ResNet (BatchNorm frozen -> buffers, fc removed)."""
    total = 3 * 64 * 7 * 7  # stem
    c_in = 64
    for planes, n in zip((64, 128, 256, 512), layers):
        out = 4 * planes
        total += c_in * planes + 9 * planes * planes + planes * out + c_in * out  # first block + downsample
        total += (n - 1) * (out * planes + 9 * planes * planes + planes * out)
        c_in = out
    return total


def test_baseline_detection_part_is_a_retinanet_with_p6_from_c5():
    torch.manual_seed(0)
    k = 80
    model = SpatialFlow(model_config("baseline", num_things=k))
    detection = (count(model.backbone) + count(model.subnets.reg_blocks) + count(model.subnets.cls_blocks)
                 + count(model.cls_head) + count(model.reg_head))
    a = 9
    fpn = (512 + 1024 + 2048) * 256 + 3 * 256 + 3 * CONV3x3_256  # lateral 1x1 + output 3x3
    p6_p7 = (2048 * 256 * 9 + 256) + CONV3x3_256  # P6 from C5 (2048 ch), P7 from P6
    towers = 8 * CONV3x3_256
    heads = (256 * a * k * 9 + a * k) + (256 * a * 4 * 9 + a * 4)
    expected = bottleneck_resnet_params() + fpn + p6_p7 + towers + heads
    assert detection == expected
    # and torchvision's own RetinaNet with the same P6-from-C5 extractor agrees
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    tv = RetinaNet(_resnet_fpn_extractor(body, 5, [2, 3, 4], extra_blocks=LastLevelP6P7(2048, 256)), k)
    assert count(tv) == expected
    # baseline has no stuff / mask sub-nets and no flows
    assert not any(n.startswith(("subnets.stuff", "subnets.mask", "subnets.phi", "subnets.psi"))
                   for n in named_counts(model))


# (preset, parameter-name prefixes it adds to the previous row, number of 3x3 256->256 convs added)
STEPS = [
    ("+subnets", {"subnets.stuff_blocks", "subnets.mask_block"}, 5),
    ("+reg_cls", {"subnets.phi_cls"}, 4),
    ("+reg_stuff", {"subnets.phi_stuff"}, 4),
    ("+reg_mask", {"subnets.phi_mask"}, 1),
    ("spatialflow", {"subnets.psi"}, 1),
]


def test_each_switch_adds_exactly_its_convs():
    names = list(PRESETS)
    counts = {}
    for preset in names:
        torch.manual_seed(0)
        counts[preset] = named_counts(SpatialFlow(model_config(preset, depth=18, num_things=3, num_stuff=2)))
    for preset, prefixes, n_convs in STEPS:
        before, after = counts[names[names.index(preset) - 1]], counts[preset]
        added = set(after) - set(before)
        assert set(before) <= set(after)
        assert all(n.startswith(tuple(prefixes)) for n in added)
        assert all(any(n.startswith(p) for n in added) for p in prefixes)
        assert sum(after.values()) - sum(before.values()) == n_convs * CONV3x3_256


def test_dcn_swaps_flows_for_offset_convs():
    torch.manual_seed(0)
    plain = named_counts(SpatialFlow(model_config("spatialflow", depth=18, num_things=3, num_stuff=2)))
    dcn = named_counts(SpatialFlow(model_config("spatialflow_dcn", depth=18, num_things=3, num_stuff=2)))
    offset = lambda c: c * 27 * 9 + 27  # 3x3 conv -> 18 offsets + 9 modulation masks
    # the 9 additive reg flows (4 cls, 4 stuff, 1 mask) become 9 offset convs of the same inputs;
    # ResNet-18 res3..res5: 2 blocks each, offset conv on the input of the second 3x3 conv (128/256/512 ch)
    expected = -9 * CONV3x3_256 + 9 * offset(256) + 2 * (offset(128) + offset(256) + offset(512))
    assert sum(dcn.values()) - sum(plain.values()) == expected
    assert "backbone.body.layer2.0.conv2.offset.weight" in dcn and "subnets.phi_offset_cls.3.weight" in dcn
    assert "backbone.body.layer1.0.conv2.offset.weight" not in dcn  # res2 stays a plain conv


def _target(h: int, w: int, boxes: list[list[int]], labels: list[int], num_stuff: int = 2) -> dict:
    masks = torch.zeros(len(boxes), h, w, dtype=torch.uint8)
    stuff = torch.zeros(h, w, dtype=torch.long)
    stuff[: h // 3] = 1
    stuff[-2:] = 255  # a void band
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = 1
        stuff[y1:y2, x1:x2] = num_stuff  # 'other'
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "masks": masks, "iscrowd": torch.zeros(len(boxes), dtype=torch.bool), "stuff": stuff}


@pytest.mark.parametrize("preset", ["baseline", "spatialflow", "spatialflow_dcn"])
def test_every_trainable_parameter_gets_gradient_and_frozen_ones_none(preset):
    torch.manual_seed(0)
    model = SpatialFlow(tiny(preset)).train()
    images = [torch.rand(3, 64, 80), torch.rand(3, 50, 45)]  # mixed sizes, not multiples of 32
    targets = [_target(64, 80, [[8, 10, 40, 50]], [1]), _target(50, 45, [[5, 5, 30, 40], [20, 2, 44, 20]], [0, 2])]
    losses = model(images, targets)
    assert set(losses) == {"cls", "reg", "mask", "stuff", "total"}
    lam = model.cfg.stuff_loss_weight
    expected_total = losses["cls"] + losses["reg"] + losses["mask"] + lam * losses["stuff"]
    assert torch.allclose(losses["total"], expected_total)
    losses["total"].backward()
    for name, p in model.named_parameters():
        frozen = name.startswith(("backbone.body.conv1", "backbone.body.layer1."))
        assert p.requires_grad == (not frozen), name
        if frozen:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(isinstance(m, FrozenBatchNorm2d) for n, m in model.backbone.named_modules() if "bn" in n.split(".")[-1])


def test_image_without_things_trains():
    torch.manual_seed(0)
    model = SpatialFlow(tiny()).train()
    losses = model([torch.rand(3, 48, 64)], [_target(48, 64, [], [])])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["reg"] == 0 and losses["mask"] == 0  # no positive anchors, no mask RoIs
    losses["total"].backward()
    assert model.stuff_head.classifier.weight.grad.abs().sum() > 0
    # crowd-only image: the crowd instance is dropped, so it trains like an empty one
    crowd = _target(48, 64, [[4, 4, 30, 30]], [0])
    crowd["iscrowd"][:] = True
    losses = model([torch.rand(3, 48, 64)], [crowd])
    assert losses["reg"] == 0 and torch.isfinite(losses["total"])


@pytest.mark.parametrize("sizes", [[(64, 64)], [(70, 90)], [(33, 47), (96, 64), (65, 129)]])
def test_eval_shapes_for_any_size_and_mixed_batches(sizes):
    torch.manual_seed(0)
    model = SpatialFlow(tiny()).eval()
    torch.nn.init.zeros_(model.cls_head.conv.bias)  # scores ~0.5, so there are detections to mask
    with torch.no_grad():
        out = model([torch.rand(3, h, w) for h, w in sizes], return_stuff_logits=True)
    assert len(out) == len(sizes)
    for o, (h, w) in zip(out, sizes):
        n = o["boxes"].shape[0]
        assert n > 0 and n <= 100
        assert o["masks"].shape == (n, h, w) and o["masks"].dtype == torch.bool
        assert o["scores"].shape == (n,) and o["labels"].shape == (n,) and int(o["labels"].max()) < 3
        assert o["stuff"].shape == (h, w) and o["stuff"].dtype == torch.int64
        assert o["stuff_logits"].shape == (3, h, w)  # 2 stuff + 'other'
        assert o["panoptic"].panoptic_ids.shape == (h, w)
        assert float(o["boxes"][:, 2].max()) <= w and float(o["boxes"][:, 3].max()) <= h
    assert "stuff_logits" not in model([torch.rand(3, 40, 40)])[0]


def test_anchor_sizes_and_exact_strides():
    anchors = Anchors(model_config("baseline"))
    # a 96x96 padded image: P3 12x12, ..., P6 2x2 (ceil(3/2)), P7 1x1
    levels = anchors([(12, 12), (6, 6), (3, 3), (2, 2), (1, 1)], torch.float32, torch.device("cpu"))
    assert [lv.shape[0] for lv in levels] == [144 * 9, 36 * 9, 9 * 9, 4 * 9, 9]
    # first P3 anchor: ratio 0.5, size 4 * 8 = 32 -> w = 32 / sqrt(0.5) = 45.25, h = 32 * sqrt(0.5) = 22.63,
    # centred on (0, 0) and rounded by torchvision -> (-23, -11, 23, 11)
    assert levels[0][0].tolist() == [-23.0, -11.0, 23.0, 11.0]
    # third P3 anchor (ratio 0.5, size 32 * 2^(2/3) = 50.8): w = 71.8, h = 35.9 -> (-36, -18, 36, 18)
    assert levels[0][2].tolist() == [-36.0, -18.0, 36.0, 18.0]
    # P6's second column is one stride (64 px) to the right, not 96 // 2 = 48
    square = levels[3][9 + 4]  # location (0, 1), ratio 1, size 4 * 64 * 2^(1/3) = 322.5
    assert (square[0] + square[2]).item() / 2 == 64.0
    inside = anchors_inside(torch.tensor([[0.0, 0, 10, 10], [60, 0, 80, 10]]), (48, 64))
    assert inside.tolist() == [True, False]  # centres x = 5 and x = 70 (> width 64)


def test_detection_losses_by_hand():
    # 3 anchors, 2 classes: anchor 0 positive (class 1), anchor 1 background, anchor 2 ignored
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [5.0, 5.0]])
    matched = torch.tensor([0, BACKGROUND, IGNORED])
    deltas = torch.tensor([[0.1, 0.2, 0.3, 0.4], [9.0, 9, 9, 9], [9.0, 9, 9, 9]])
    target = torch.zeros(1, 4)
    cls, reg = detection_losses(logits, deltas, matched, target, torch.tensor([1]), alpha=0.25, gamma=2.0)
    # focal(p, y): y=1 -> -alpha (1-p)^2 log p; y=0 -> -(1-alpha) p^2 log(1-p)
    # anchor 0: class 0 (y=0, p=.5): .75*.25*ln2; class 1 (y=1, p=.5): .25*.25*ln2
    # anchor 1: class 0 (y=0, p=.5): .75*.25*ln2; class 1 (y=0, p=.75): .75*.5625*ln4
    expected = (0.75 * 0.25 + 0.25 * 0.25 + 0.75 * 0.25) * math.log(2) + 0.75 * 0.5625 * math.log(4)
    assert cls.item() == pytest.approx(expected, rel=1e-5)  # one positive: divided by 1
    assert reg.item() == pytest.approx(0.1 + 0.2 + 0.3 + 0.4)


def test_stuff_loss_ignores_void_and_padding():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 0] = math.log(3.0)  # pixel 0: p(class 0) = 3/4
    target = torch.tensor([[[0, 1, 255]]])
    # pixel 0: -ln(3/4); pixel 1: -ln(1/2); pixel 2 ignored -> mean over 2 pixels
    assert stuff_loss(logits, target).item() == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)
    assert stuff_loss(logits, torch.full((1, 1, 3), 255)).item() == 0.0


def test_imagenet_weights_only_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CheckpointError, match="pretrained weights for ResNet-18 not found"):
        ResNetFPN(18, 16, pretrained=True)
    source = ResNetFPN(18, 16)
    path = imagenet_weights_path(18)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.body.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # the ImageNet classifier is dropped
    (tmp_path / "checkpoints").mkdir()
    torch.save(state, path)
    loaded = ResNetFPN(18, 16, pretrained=True, dcn=True)  # DCN offsets are new; the rest must load
    assert torch.equal(loaded.body.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(loaded.body.bn1.running_var, state["bn1.running_var"])
    torch.save({"conv1.weight": state["conv1.weight"]}, path)
    with pytest.raises(CheckpointError, match="not ResNet-18"):
        ResNetFPN(18, 16, pretrained=True)
