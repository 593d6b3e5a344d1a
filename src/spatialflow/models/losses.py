"""The training losses, eq. (4): L = (L_cls + L_reg + L_mask) + lambda * L_stuff."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.ops import sigmoid_focal_loss

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


def stuff_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-pixel cross-entropy averaged over labelled pixels (void / padding = IGNORE_INDEX)."""
    valid = int((target != IGNORE_INDEX).sum())
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss / max(1, valid)


def mask_loss(
    mask_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    gt_labels: list[Tensor],
    matched: list[Tensor],
) -> Tensor:
    """Per-pixel BCE on each proposal's GT-class 28x28 mask (torchvision's Mask R-CNN loss)."""
    return maskrcnn_loss(mask_logits, proposals, gt_masks, gt_labels, matched)
