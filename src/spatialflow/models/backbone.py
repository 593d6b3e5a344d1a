"""ResNet (torchvision) + FPN producing P3..P7; P6 from C5 (section 3.1).

BatchNorm (``norm``): "frozen" = ``FrozenBatchNorm2d`` everywhere (statistics and affine are buffers), or
"frozen_stats" = the authors' ``norm_eval=True`` with ``requires_grad=True``: ``BatchNorm2d`` kept in eval
mode (ImageNet statistics, never updated) with trainable affine parameters outside the frozen stages.
Frozen stem + res2 (``frozen_stages=1``; -1 freezes nothing, 0 the stem only);
optional deformable 3x3 convs in res3..res5 (Table 6); optional pretrained weights, never downloaded: ImageNet
from torchvision's local cache, or any file in that format (``weights``; the tiny profile's ImageNet stand-in).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from spatialflow.errors import CheckpointError
from spatialflow.models.deform import DeformConv3x3Pack
from spatialflow.models.resnet import TORCHVISION_WIDTH, build_resnet, stage_channels

FPN_STRIDES = (8, 16, 32, 64, 128)  # P3..P7

_IMAGENET_WEIGHTS = {
    18: models.ResNet18_Weights.IMAGENET1K_V1,
    34: models.ResNet34_Weights.IMAGENET1K_V1,
    50: models.ResNet50_Weights.IMAGENET1K_V1,
    101: models.ResNet101_Weights.IMAGENET1K_V1,
}


def imagenet_weights_path(depth: int) -> str:
    """Where torchvision's cache keeps the ImageNet ResNet-``depth`` weights."""
    url = _IMAGENET_WEIGHTS[depth].url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


class LastLevelP6P7Float32(LastLevelP6P7):
    """torchvision's P6 / P7 block, computed in float32 even under autocast.

    On the CPU, oneDNN's bfloat16 weight gradient of a 3x3 stride-2 convolution whose input is a 1x1 map (P7
    whenever P6 is 1x1: images of up to 64 px a side, as the micro profile's and Table 6's smallest scale)
    reads uninitialised memory: garbage up to 1e27 in the taps that only see padding, different in every run,
    so bfloat16 training there was neither right nor repeatable (tests/spatialflow/models/
    test_models_autocast.py). P6 and P7 are maps of a few pixels; float32 there costs nothing measurable.
    Without autocast this is exactly torchvision's block."""

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        x = p[-1] if self.use_P5 else c[-1]
        with torch.autocast(x.device.type, enabled=False):
            p6 = self.p6(x.float())
            p7 = self.p7(torch.nn.functional.relu(p6))
        p.extend([p6, p7])
        names.extend(["p6", "p7"])
        return p, names


class ResNetFPN(nn.Module):
    """Images (B, 3, H, W), H and W multiples of 32 -> [P3, P4, P5, P6, P7]."""

    def __init__(
        self,
        depth: int,
        out_channels: int,
        *,
        dcn: bool = False,
        pretrained: bool = False,
        weights: str | None = None,
        frozen_stages: int = 1,
        norm: str = "frozen",
        width: int = TORCHVISION_WIDTH,
    ) -> None:
        super().__init__()
        self.norm = norm
        self.body = build_resnet(depth, width, norm_layer=FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d)
        del self.body.fc, self.body.avgpool
        if dcn:
            for stage in (self.body.layer2, self.body.layer3, self.body.layer4):
                for block in stage:
                    conv = block.conv2
                    block.conv2 = DeformConv3x3Pack(conv.in_channels, conv.out_channels, conv.stride[0])
        if pretrained:
            self._load_pretrained(depth, weights or imagenet_weights_path(depth))
        self._freeze(frozen_stages)
        c3, c4, c5 = stage_channels(depth, width)
        extra = LastLevelP6P7Float32(c5, out_channels)
        extra.use_P5 = False  # P6 from C5, also when C5 happens to have out_channels channels
        self.fpn = FeaturePyramidNetwork([c3, c4, c5], out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def _load_pretrained(self, depth: int, path: str) -> None:
        """ImageNet weights from torchvision's cache, or a file in the same format (``backbone_weights``,
        e.g. the tiny profile's ImageNet stand-in from ``spatialflow.engine.pretrain``)."""
        if not os.path.isfile(path):
            raise CheckpointError(
                f"{path}: pretrained weights for ResNet-{depth} not found (nothing is downloaded; copy "
                "torchvision's ImageNet file there, run the pretrain_backbone stage, or set "
                "pretrained_backbone=False)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a checkpoint problem
            raise CheckpointError(f"{path}: cannot read pretrained weights ({exc})") from exc
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        result = self.body.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if ".offset." not in k and not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise CheckpointError(
                f"{path}: not ResNet-{depth} weights (missing {missing[:3]}, unexpected "
                f"{result.unexpected_keys[:3]})"
            )

    def _freeze(self, frozen_stages: int) -> None:
        stages = [nn.ModuleList([self.body.conv1, self.body.bn1]), self.body.layer1, self.body.layer2,
                  self.body.layer3, self.body.layer4]
        for stage in stages[: frozen_stages + 1]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetFPN:
        """As nn.Module.train, but BatchNorm statistics stay frozen (mmdet's ``norm_eval=True``)."""
        super().train(mode)
        for m in self.body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        c2 = b.layer1(x)
        c3 = b.layer2(c2)
        c4 = b.layer3(c3)
        c5 = b.layer4(c4)
        return list(self.fpn(OrderedDict([("c3", c3), ("c4", c4), ("c5", c5)])).values())
