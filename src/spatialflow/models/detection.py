"""Anchors, anchor-to-GT matching, box coding and detection post-processing (RetinaNet parts).

All the machinery is torchvision's (AnchorGenerator, Matcher, BoxCoder, batched_nms); this module only
fixes the paper's settings and the exact FPN strides 8..128 (torchvision's AnchorGenerator would infer
strides by integer division, which is wrong for P6/P7 of images that are not multiples of 128).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from spatialflow.models.backbone import FPN_STRIDES
from spatialflow.models.config import SpatialFlowConfig

# Matcher labels for anchors
BACKGROUND = det_utils.Matcher.BELOW_LOW_THRESHOLD  # -1
IGNORED = det_utils.Matcher.BETWEEN_THRESHOLDS  # -2


class Anchors:
    """The paper's anchors: sizes base * stride * 2^(k/3), ratios 0.5/1/2, one grid per FPN level."""

    def __init__(self, cfg: SpatialFlowConfig) -> None:
        n = cfg.anchor_scales_per_octave
        sizes = tuple(
            tuple(cfg.anchor_octave_base_scale * s * 2 ** (k / n) for k in range(n)) for s in FPN_STRIDES
        )
        self.generator = AnchorGenerator(sizes, (cfg.anchor_ratios,) * len(FPN_STRIDES))

    def __call__(self, feature_sizes: list[tuple[int, int]], dtype: torch.dtype, device: torch.device) -> list[Tensor]:
        """Per level (H_l * W_l * A, 4) xyxy anchors, in the order of :func:`heads.flatten_level`."""
        self.generator.set_cell_anchors(dtype, device)
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in FPN_STRIDES]
        return self.generator.grid_anchors([list(s) for s in feature_sizes], strides)


def box_coder() -> det_utils.BoxCoder:
    """Delta (dx, dy, dw, dh) coding with unit weights, as RetinaNet."""
    return det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


def match_anchors(anchors: Tensor, gt_boxes: Tensor, matcher: det_utils.Matcher) -> Tensor:
    """(A,) index of the matched GT box per anchor, or BACKGROUND / IGNORED."""
    if gt_boxes.numel() == 0:
        return torch.full((anchors.shape[0],), BACKGROUND, dtype=torch.int64, device=anchors.device)
    return matcher(box_iou(gt_boxes, anchors))


def anchors_inside(anchors: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(A,) bool: anchor centre inside the image's unpadded area (padding never counts in a loss)."""
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    h, w = image_size
    return (cx >= 0) & (cy >= 0) & (cx < w) & (cy < h)


@dataclass
class Detections:
    """Boxes (N, 4) xyxy, scores (N,), labels (N,) int64 of one image."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    @staticmethod
    def cat(parts: list[Detections]) -> Detections:
        return Detections(*(torch.cat([getattr(p, f) for p in parts]) for f in ("boxes", "scores", "labels")))


def select_candidates(
    cls_logits: list[Tensor],
    box_deltas: list[Tensor],
    anchors: list[Tensor],
    image_size: tuple[int, int],
    coder: det_utils.BoxCoder,
    score_thresh: float,
    topk: int,
    ranking: str = "pair",
) -> Detections:
    """One image's pre-NMS candidates per level, decoded and clipped to the image. Inputs per level:
    (HWA, K), (HWA, 4), (HWA, 4). ``ranking``: "pair" = the ``topk`` (anchor, class) pairs scoring above
    ``score_thresh``; "anchor_max" = the ``topk`` anchors by their maximum class score (mmdet's
    ``get_bboxes`` ``nms_pre``), then every class of those anchors scoring above ``score_thresh``
    (``multiclass_nms``)."""
    parts = []
    for logits, deltas, level_anchors in zip(cls_logits, box_deltas, anchors):
        num_classes = logits.shape[-1]
        if ranking == "anchor_max":
            scores, anchor_idx, labels = _anchor_max_candidates(torch.sigmoid(logits), score_thresh, topk)
        else:
            scores = torch.sigmoid(logits).flatten()
            keep = torch.where(scores > score_thresh)[0]
            scores = scores[keep]
            scores, order = scores.topk(min(topk, scores.numel()))
            keep = keep[order]
            anchor_idx = torch.div(keep, num_classes, rounding_mode="floor")
            labels = keep % num_classes
        boxes = coder.decode_single(deltas[anchor_idx], level_anchors[anchor_idx])
        parts.append(Detections(clip_boxes_to_image(boxes, image_size), scores, labels))
    return Detections.cat(parts)


def _anchor_max_candidates(scores: Tensor, score_thresh: float, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """(A, K) class scores -> (scores, anchor indices, labels) of the (anchor, class) pairs above
    ``score_thresh`` among the ``topk`` anchors of highest maximum class score."""
    if scores.shape[0] > topk:
        top_anchors = scores.max(dim=1).values.topk(topk).indices
    else:
        top_anchors = torch.arange(scores.shape[0], device=scores.device)
    anchor_pos, labels = torch.where(scores[top_anchors] > score_thresh)
    return scores[top_anchors][anchor_pos, labels], top_anchors[anchor_pos], labels


def nms_top(dets: Detections, iou_threshold: float, max_detections: int) -> Detections:
    """Per-class NMS, then the ``max_detections`` highest scores."""
    keep = batched_nms(dets.boxes, dets.scores, dets.labels, iou_threshold)[:max_detections]
    return Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep])
