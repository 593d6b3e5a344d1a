"""torchvision's ResNets, optionally narrower: the one place a backbone network is built.

``width`` is the stem's and res2's channel count (torchvision: 64); every stage scales with it, so
``width=32`` is a half-width ResNet with a quarter of the FLOPs and parameters (the tiny profile's stand-in
for ResNet-50/101 on a CPU). ``width=64`` is exactly torchvision's network, so ImageNet weights load.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

_LAYERS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
           50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3])}
TORCHVISION_WIDTH = 64


class _ScaledResNet(models.ResNet):
    """torchvision's ``ResNet`` with every stage ``width / 64`` as wide (the stem too)."""

    def __init__(self, block: type, layers: list[int], width: int, **kwargs) -> None:
        self._width = width
        super().__init__(block, layers, **kwargs)
        self.fc = nn.Linear(self.inplanes, self.fc.out_features)  # res5's channels, not torchvision's 512 / 2048

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # noqa: ANN001 - torchvision's
        if self.inplanes == TORCHVISION_WIDTH and planes == TORCHVISION_WIDTH:  # res2: narrow the stem first
            self.conv1 = nn.Conv2d(3, self._width, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = self._norm_layer(self._width)
            self.inplanes = self._width
        return super()._make_layer(block, planes * self._width // TORCHVISION_WIDTH, blocks, stride, dilate)


def build_resnet(depth: int, width: int = TORCHVISION_WIDTH, *, norm_layer: Callable[[int], nn.Module] | None = None,
                 num_classes: int = 1000) -> models.ResNet:
    """ResNet-``depth`` (18/34/50/101) with ``width`` channels in its stem and res2 (64: torchvision's own)."""
    if depth not in _LAYERS:
        raise ValueError(f"ResNet depth must be one of {sorted(_LAYERS)}, got {depth!r}")
    if width < 8 or width % 8:
        raise ValueError(f"ResNet width must be a multiple of 8, got {width!r}")
    block, layers = _LAYERS[depth]
    if width == TORCHVISION_WIDTH:
        return models.ResNet(block, layers, num_classes=num_classes, norm_layer=norm_layer)
    return _ScaledResNet(block, layers, width, num_classes=num_classes, norm_layer=norm_layer)


def stage_channels(depth: int, width: int = TORCHVISION_WIDTH) -> tuple[int, int, int]:
    """Output channels of res3, res4, res5 (C3, C4, C5)."""
    expansion = _LAYERS[depth][0].expansion
    return tuple(width * m * expansion for m in (2, 4, 8))
