"""The training losses, eq. (4): L = (L_cls + L_reg + L_mask) + lambda * L_stuff."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import roi_align, sigmoid_focal_loss

from spatialflow.data.categories import IGNORE_INDEX
from spatialflow.models.detection import BACKGROUND


def detection_losses(
    cls_logits: Tensor,
    box_deltas: Tensor,
    matched: Tensor,
    target_deltas: Tensor,
    gt_labels: Tensor,
    *,
    alpha: float,
    gamma: float,
) -> tuple[Tensor, Tensor]:
    """Focal loss over non-ignored anchors and L1 over positive anchors, both / number of positives.

    cls_logits (A, K), box_deltas (A, 4) for all anchors of the batch; matched (A,) = GT index, BACKGROUND
    or any other negative value for ignored; target_deltas (P, 4) and gt_labels (P,) for the positives.
    """
    positive = matched >= 0
    counted = positive | (matched == BACKGROUND)
    num_pos = max(1, int(positive.sum()))
    targets = torch.zeros_like(cls_logits)
    targets[positive.nonzero(as_tuple=True)[0], gt_labels] = 1.0
    cls = sigmoid_focal_loss(cls_logits[counted], targets[counted], alpha=alpha, gamma=gamma, reduction="sum")
    reg = F.l1_loss(box_deltas[positive], target_deltas, reduction="sum")
    return cls / num_pos, reg / num_pos


def stuff_loss(logits: Tensor, target: Tensor, image_sizes: list[tuple[int, int]] | None = None) -> Tensor:
    """Per-pixel cross-entropy summed over labelled pixels (void / padding = IGNORE_INDEX), divided by

    - the number of labelled pixels (``image_sizes`` None: the default), or
    - the number of unpadded pixels, void included (``image_sizes``: each image's (h, w) inside the padded
      batch; the authors' ``avg_factor``, computed per image rather than from image 0's window).
    """
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    if image_sizes is None:
        count = int((target != IGNORE_INDEX).sum())
    else:
        count = sum(h * w for h, w in image_sizes)
    return loss / max(1, count)


def mask_loss(
    mask_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    gt_labels: list[Tensor],
    matched: list[Tensor],
    target: str = "soft",
) -> Tensor:
    """Per-pixel BCE on each proposal's GT-class mask, averaged over R x 28 x 28. ``target`` "soft":
    torchvision's Mask R-CNN loss (aligned=False RoIAlign, fractional targets); "binary": mmdet's
    :func:`binary_mask_targets`."""
    if target == "soft":
        return maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, matched)
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[i] for lab, i in zip(gt_labels, matched)])
    targets = torch.cat([binary_mask_targets(m, p, i, size) for m, p, i in zip(gt_masks, proposals, matched)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets)


def binary_mask_targets(gt_masks: Tensor, boxes: Tensor, matched: Tensor, size: int) -> Tensor:
    """mmdet's mask targets (BitmapMasks.crop_and_resize): each box's GT mask RoIAligned to size x size
    with ``aligned=True``, ``sampling_ratio=0``, then binarised at >= 0.5. (R, size, size) float 0/1."""
    rois = torch.cat([matched.to(boxes)[:, None], boxes], dim=1)
    crops = roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0, sampling_ratio=0, aligned=True)[:, 0]
    return (crops >= 0.5).to(crops.dtype)
