"""Deformable convolution (DCNv2): the CPU path is torchvision's deform_conv2d, computed differently."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize("stride", [1, 2])
def test_cpu_deformable_conv_equals_torchvision(stride):
    """The CPU path (one grid_sample + matmul) is torchvision's deform_conv2d: values and every gradient,
    float64, offsets large enough to sample outside the image (zeros there), odd sizes, with and without bias."""
    from torchvision.ops import deform_conv2d

    from spatialflow.models.deform import deform_conv3x3_sampled

    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64, requires_grad=True)
    out_h, out_w = (9 - 1) // stride + 1, (11 - 1) // stride + 1
    offset = (3 * torch.randn(2, 18, out_h, out_w, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(2, 9, out_h, out_w, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    for bias in (None, torch.randn(4, dtype=torch.float64, requires_grad=True)):
        inputs = (x, offset, mask, weight) + ((bias,) if bias is not None else ())
        ours = deform_conv3x3_sampled(x, offset, weight, bias, stride, mask)
        theirs = deform_conv2d(x, offset, weight, bias, stride=stride, padding=1, mask=mask)
        assert ours.shape == theirs.shape == (2, 4, out_h, out_w)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        for g_ours, g_theirs in zip(torch.autograd.grad(ours.square().sum(), inputs),
                                    torch.autograd.grad(theirs.square().sum(), inputs)):
            torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=1e-10)


def test_cpu_deformable_conv_with_zero_offsets_is_a_plain_conv():
    """Zero offsets and a mask of ones: a 3x3 convolution with padding 1 (hand-checkable special case)."""
    from spatialflow.models.deform import deform_conv3x3_sampled

    torch.manual_seed(1)
    x = torch.randn(1, 3, 6, 7, dtype=torch.float64)
    weight = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    ours = deform_conv3x3_sampled(x, torch.zeros(1, 18, 6, 7, dtype=torch.float64), weight, None, 1,
                                  torch.ones(1, 9, 6, 7, dtype=torch.float64))
    torch.testing.assert_close(ours, torch.nn.functional.conv2d(x, weight, padding=1), rtol=0, atol=1e-12)
