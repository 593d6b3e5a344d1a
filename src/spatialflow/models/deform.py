"""Modulated deformable 3x3 convolution (DCNv2): torchvision.ops.deform_conv2d on GPUs, the same
arithmetic as one ``grid_sample`` + one matrix product on CPUs (:func:`deform_conv3x3_sampled`, 4-10x
faster there than torchvision's per-image im2col loop; equal to it to 1e-14 in float64, gradients too).

The offsets and modulation masks come from outside (``ModulatedDeformConv3x3``: the sub-nets feed them
from a flow, supplement eq. 6) or from an offset conv on the layer's own input
(``DeformConv3x3Pack``: the ResNet stages).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
        if x.device.type == "cpu":
            return deform_conv3x3_sampled(x, offset, self.weight, self.bias, self.stride, torch.sigmoid(mask))
        return deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=1, mask=torch.sigmoid(mask)
        )


def deform_conv3x3_sampled(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                           mask: Tensor) -> Tensor:
    """``deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)`` for 3x3 kernels.

    Tap k = 3 * ky + kx of output (i, j) reads x bilinearly at (i * stride - 1 + ky + offset[:, 2k],
    j * stride - 1 + kx + offset[:, 2k + 1]), zero outside the image (torchvision's layout and boundary).
    All 9 taps are one ``grid_sample`` (align_corners=True: grid -1 / 1 are the first / last pixel
    centres), scaled by the mask, then contracted with the weight as an (O, C * 9) matrix."""
    b, c, h, w = x.shape
    out_h, out_w = offset.shape[-2:]
    taps = KERNEL * KERNEL
    ys = torch.arange(out_h, device=x.device, dtype=x.dtype) * stride - 1
    xs = torch.arange(out_w, device=x.device, dtype=x.dtype) * stride - 1
    ky = torch.arange(KERNEL, device=x.device, dtype=x.dtype).repeat_interleave(KERNEL).view(1, taps, 1, 1)
    kx = torch.arange(KERNEL, device=x.device, dtype=x.dtype).repeat(KERNEL).view(1, taps, 1, 1)
    offset = offset.view(b, taps, 2, out_h, out_w)
    rows = ys.view(1, 1, out_h, 1) + ky + offset[:, :, 0]
    cols = xs.view(1, 1, 1, out_w) + kx + offset[:, :, 1]
    grid = torch.stack((cols * (2 / max(w - 1, 1)) - 1, rows * (2 / max(h - 1, 1)) - 1), dim=-1)
    sampled = F.grid_sample(x, grid.view(b, taps * out_h, out_w, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=True)
    sampled = sampled.view(b, c, taps, out_h, out_w) * mask.view(b, 1, taps, out_h, out_w)
    out = torch.matmul(weight.reshape(weight.shape[0], c * taps), sampled.view(b, c * taps, out_h * out_w))
    out = out.view(b, weight.shape[0], out_h, out_w)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


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
