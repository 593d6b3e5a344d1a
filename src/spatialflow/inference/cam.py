"""Class activation maps of the cls and stuff heads (the paper's Figure 4), read with forward hooks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def cam_heatmaps(model: torch.nn.Module, images: Sequence[torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """Per image, (H, W) float maps in [0, 1] at the image's size:

    ``cls``: the highest class probability over all anchors and thing classes at P3 (sigmoid of the cls
    head's first, stride-8 output); ``stuff``: the highest stuff-class probability of the stuff head
    (softmax, without the 'other' class that stands for things). Read with forward hooks on
    ``model.cls_head.conv`` and ``model.stuff_head``; the model is left as it was.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep_first(name: str):
        def hook(module, inputs, output) -> None:
            captured.setdefault(name, output.detach().float())
        return hook

    handles = [model.cls_head.conv.register_forward_hook(keep_first("cls")),
               model.stuff_head.register_forward_hook(keep_first("stuff"))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run = getattr(model, "raw_outputs", model)  # the network without NMS / merge where available
            run(list(images))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    stuff = captured["stuff"].softmax(dim=1)[:, :-1].amax(dim=1, keepdim=True)  # (B, 1, H_pad, W_pad)
    cls = captured["cls"].sigmoid().amax(dim=1, keepdim=True)  # (B, 1, H_pad / 8, W_pad / 8)
    cls = F.interpolate(cls, size=stuff.shape[-2:], mode="bilinear", align_corners=False)
    maps = []
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        maps.append({"cls": cls[i, 0, :h, :w].cpu().numpy(), "stuff": stuff[i, 0, :h, :w].cpu().numpy()})
    return maps
