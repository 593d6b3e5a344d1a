"""Modulated deformable 3x3 convolution (DCNv2) on torchvision.ops.deform_conv2d.

The offsets and modulation masks come from outside (``ModulatedDeformConv3x3``: the sub-nets feed them
from a flow, supplement eq. 6) or from an offset conv on the layer's own input
(``DeformConv3x3Pack``: the ResNet stages).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

KERNEL = 3
OFFSET_CHANNELS = 3 * KERNEL * KERNEL  # 18 offsets (dy, dx per tap) + 9 modulation masks


class ModulatedDeformConv3x3(nn.Module):
    """3x3 deformable conv whose (B, 27, H', W') offsets + mask logits are an input of forward."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, KERNEL, KERNEL))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor, offset_and_mask: Tensor) -> Tensor:
        offset, mask = offset_and_mask.split([2 * KERNEL * KERNEL, KERNEL * KERNEL], dim=1)
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=1, mask=torch.sigmoid(mask)
        )


def offset_conv(in_channels: int, stride: int = 1) -> nn.Conv2d:
    """The adaptation conv phi_offset; zero-initialised so training starts from a plain conv."""
    conv = nn.Conv2d(in_channels, OFFSET_CHANNELS, KERNEL, stride=stride, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class DeformConv3x3Pack(ModulatedDeformConv3x3):
    """Deformable conv with its own offset conv on its input (drop-in for a ResNet 3x3 conv).

    Its ``weight`` has the name and shape of the conv it replaces, so ImageNet weights still load.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, stride, bias)
        self.offset = offset_conv(in_channels, stride)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x, self.offset(x))
