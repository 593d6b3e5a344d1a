"""spatialflow.models.resnet: torchvision's ResNets, optionally narrower (``model.backbone_width``)."""

from __future__ import annotations

import pytest
import torch
from torchvision import models

from spatialflow.engine.pretrain import PretrainConfig, build_classifier
from spatialflow.errors import ConfigError
from spatialflow.models.backbone import ResNetFPN
from spatialflow.models.config import model_config
from spatialflow.models.resnet import build_resnet, stage_channels


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("depth", [18, 50])
def test_width_64_is_torchvisions_network(depth):
    ours = build_resnet(depth)
    theirs = getattr(models, f"resnet{depth}")(weights=None)
    assert _shapes(ours) == _shapes(theirs)  # ImageNet files load into it unchanged
    torch.manual_seed(0)
    a = build_resnet(depth)
    torch.manual_seed(0)
    b = getattr(models, f"resnet{depth}")(weights=None)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())  # same init draws


def test_half_width_resnet18_channels_and_parameters():
    net = build_resnet(18, 32, num_classes=10)
    assert net.conv1.out_channels == 32 and net.bn1.num_features == 32
    # res2..res5: 32, 64, 128, 256 channels (torchvision: 64 ... 512)
    assert [stage[-1].conv2.out_channels for stage in (net.layer1, net.layer2, net.layer3, net.layer4)] == [
        32, 64, 128, 256]
    assert net.fc.in_features == 256 and net.fc.out_features == 10
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    # every 3x3 conv has a quarter of the weights: the whole body (no fc) is within 1 % of a quarter
    body = lambda m: sum(p.numel() for n, p in m.named_parameters() if not n.startswith("fc."))  # noqa: E731
    assert body(net) / body(build_resnet(18)) == pytest.approx(0.25, abs=0.01)


def test_stage_channels():
    assert stage_channels(18) == (128, 256, 512)
    assert stage_channels(34, 32) == (64, 128, 256)
    assert stage_channels(50) == (512, 1024, 2048)
    assert stage_channels(101, 32) == (256, 512, 1024)


def test_fpn_on_a_half_width_backbone():
    fpn = ResNetFPN(18, 16, width=32)
    outs = fpn(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    assert fpn.fpn.inner_blocks[0][0].in_channels == 64  # C3 of a half-width ResNet-18


@pytest.mark.parametrize("width", [0, 12, 30])
def test_bad_width(width):
    with pytest.raises(ValueError, match="multiple of 8"):
        build_resnet(18, width)
    with pytest.raises(ConfigError, match="model.backbone_width: must be a multiple of 8"):
        model_config("baseline", depth=18, backbone_width=width)
    with pytest.raises(ConfigError, match="pretrain.width"):
        PretrainConfig(width=width)


def test_narrow_backbone_needs_its_own_weights():
    with pytest.raises(ConfigError, match="model.backbone_width: 32 has no ImageNet weights"):
        model_config("baseline", depth=18, backbone_width=32, pretrained_backbone=True)


def test_pretrain_classifier_has_the_backbone_width():
    net = build_classifier(18, 7, width=32)
    assert net.conv1.out_channels == 32 and net.fc.in_features == 256 and net.fc.out_features == 7
