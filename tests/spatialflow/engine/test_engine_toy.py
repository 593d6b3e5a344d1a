"""The toy model of ``helpers.toy`` (the engine tests' stand-in for SpatialFlow) computes what it says."""

from __future__ import annotations

import torch

from helpers.toy import ToyModel


def test_toy_model_loss_is_hand_computed_mse():
    model = ToyModel()
    with torch.no_grad():
        model.conv.weight.zero_()
        model.conv.bias.fill_(1.0)  # conv output 1 everywhere -> mean 1
        model.head.weight.fill_(0.5)  # 4 channels * 0.5 = 2
        model.head.bias.fill_(0.0)
    images = [torch.zeros(3, 8, 8), torch.zeros(3, 9, 8)]
    losses = model(images, [{"y": torch.tensor(1.0)}, {"y": torch.tensor(4.0)}])
    # preds are 2 and 2: fit = ((2-1)^2 + (2-4)^2) / 2 = 2.5; size = 0.01 * 4 * 0.25 = 0.01
    assert losses["fit"].item() == 2.5
    assert abs(losses["size"].item() - 0.01) < 1e-7
    assert abs(losses["total"].item() - 2.51) < 1e-6
