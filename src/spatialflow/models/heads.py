"""The task-specific heads (paper section 3.3): box classification, box regression, stuff, mask."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign, roi_align

from spatialflow.models.deform import DeformConv3x3Pack
from spatialflow.models.subnets import init_std

PRIOR_PROBABILITY = 0.01
MASK_ROI_SIZE = 14  # RoIAlign output; the predictor doubles it to 28x28
MASK_CANONICAL_SCALE = 56  # box scale < 112 -> P3, < 224 -> P4, else P5 (reference code's mapping)
SEGMENTATION_LEVEL_NAMES = ["p3", "p4", "p5"]


def _head_conv(in_channels: int, out_channels: int, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=init_std(in_channels))
    nn.init.constant_(conv.bias, bias)
    return conv


def flatten_level(x: Tensor, per_anchor: int) -> Tensor:
    """(B, A*D, H, W) -> (B, H*W*A, D), the order of torchvision's grid anchors."""
    b, _, h, w = x.shape
    return x.view(b, -1, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, per_anchor)


class ClassificationHead(nn.Module):
    """cls sub-net output -> (B, H*W*A, K) logits (sigmoid classes), prior-probability bias."""

    def __init__(self, channels: int, num_anchors: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        self.conv = _head_conv(channels, num_anchors * num_classes, bias)

    def forward(self, x: Tensor) -> Tensor:
        return flatten_level(self.conv(x), self.num_classes)


class RegressionHead(nn.Module):
    """reg sub-net output -> (B, H*W*A, 4) box deltas."""

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = _head_conv(channels, num_anchors * 4)

    def forward(self, x: Tensor) -> Tensor:
        return flatten_level(self.conv(x), 4)


class StuffHead(nn.Module):
    """Stuff sub-net outputs at 1/8, 1/16, 1/32 -> (B, S + 1, H, W) logits at the padded image size.

    Level 1/8 gets 1 block, 1/16 gets 2, 1/32 gets 3; a block is conv3x3 + GroupNorm + ReLU + 2x
    bilinear upsampling, so all reach 1/4; they are summed, a 1x1 conv gives the classes, 4x upsampling.
    ``dcn``: every 3x3 conv is a modulated deformable conv with its own zero-initialised offset conv (Table 7
    "-COCO-M", "as UPSNet does"); its ``weight`` keeps the plain conv's name, so a plain checkpoint loads.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, groups: int = 32, dcn: bool = False) -> None:
        super().__init__()
        self.levels = nn.ModuleList()
        for level in range(3):
            blocks = []
            for b in range(level + 1):
                c_in = in_channels if b == 0 else channels
                blocks += [
                    DeformConv3x3Pack(c_in, channels) if dcn else nn.Conv2d(c_in, channels, 3, padding=1, bias=False),
                    nn.GroupNorm(groups, channels),
                    nn.ReLU(inplace=True),
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                ]
            self.levels.append(nn.Sequential(*blocks))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.levels[0](features[0])
        for level, feature in zip(self.levels[1:], features[1:]):
            x = x + level(feature)
        return F.interpolate(self.classifier(x), scale_factor=4, mode="bilinear", align_corners=False)


class MaskHead(nn.Module):
    """Mask R-CNN mask head over the mask sub-net outputs: RoIAlign 14x14 on P3..P5, four conv3x3 +
    ReLU, 2x2 stride-2 transposed conv + ReLU, 1x1 conv -> (R, K, 28, 28) class-specific mask logits.

    ``aligned``: mmcv's RoIAlign (``aligned=True``: box corners shifted by half a pixel) with mmdet's level
    mapping (:func:`mask_roi_levels`); otherwise torchvision's ``MultiScaleRoIAlign`` (``aligned=False``)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, aligned: bool = False) -> None:
        super().__init__()
        self.aligned = aligned
        self.roi_align = MultiScaleRoIAlign(
            SEGMENTATION_LEVEL_NAMES, MASK_ROI_SIZE, sampling_ratio=0,
            canonical_scale=MASK_CANONICAL_SCALE, canonical_level=3,
        )
        self.convs = MaskRCNNHeads(in_channels, [channels] * 4, dilation=1)
        self.predictor = MaskRCNNPredictor(channels, channels, num_classes)

    def forward(self, features: list[Tensor], boxes: list[Tensor], padded_size: tuple[int, int]) -> Tensor:
        if self.aligned:
            rois = aligned_multiscale_roi_align(features, boxes, padded_size, MASK_ROI_SIZE)
        else:
            named = dict(zip(SEGMENTATION_LEVEL_NAMES, features))
            rois = self.roi_align(named, boxes, [padded_size] * len(boxes))
        return self.predictor(self.convs(rois))


def mask_roi_levels(boxes: Tensor, num_levels: int) -> Tensor:
    """mmdet's SingleRoIExtractor.map_roi_levels: floor(log2(sqrt(w * h) / 56 + 1e-6)) clamped to the
    levels (P3 below scale 112, P4 below 224, else P5)."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(torch.log2(scale / MASK_CANONICAL_SCALE + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def aligned_multiscale_roi_align(
    features: list[Tensor], boxes: list[Tensor], padded_size: tuple[int, int], output_size: int
) -> Tensor:
    """RoIAlign with ``aligned=True`` and ``sampling_ratio=0`` (mmcv's defaults in the authors' config) of
    each box on its level; level l has stride padded_height / feature height (8, 16, 32)."""
    rois = torch.cat([torch.cat([b.new_full((b.shape[0], 1), i), b], dim=1) for i, b in enumerate(boxes)])
    levels = mask_roi_levels(rois[:, 1:], len(features))
    out = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    for level, feature in enumerate(features):
        index = torch.where(levels == level)[0]
        if index.numel() == 0:
            continue
        scale = feature.shape[-2] / padded_size[0]
        out[index] = roi_align(feature, rois[index], output_size, spatial_scale=scale, sampling_ratio=0,
                               aligned=True).to(out.dtype)
    return out


def select_class_masks(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """(R, K, M, M) logits + (R,) labels -> (R, M, M) probabilities of each RoI's own class."""
    index = torch.arange(labels.numel(), device=labels.device)
    return mask_logits[index, labels].sigmoid()
