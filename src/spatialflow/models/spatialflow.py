"""SpatialFlow (paper section 3): backbone + FPN, four sub-networks with spatial flows, four heads.

Training: ``model(images, targets)`` -> {"cls", "reg", "mask", "stuff", "total"}.
Inference: ``model(images)`` -> one dict per image (detections, masks, stuff map, merged panoptic result).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from torchvision.ops import box_iou

from spatialflow.data.batching import pad_images, pad_label_maps
from spatialflow.models.backbone import ResNetFPN
from spatialflow.models.config import InferenceConfig, SpatialFlowConfig, inference_config
from spatialflow.models.detection import (
    IGNORED,
    Anchors,
    Detections,
    anchors_inside,
    box_coder,
    match_anchors,
    nms_top,
    select_candidates,
)
from spatialflow.models.heads import (
    ClassificationHead,
    MaskHead,
    RegressionHead,
    StuffHead,
    select_class_masks,
)
from spatialflow.models.losses import detection_losses, mask_loss, stuff_loss
from spatialflow.models.subnets import SubNetworks
from spatialflow.panoptic.merge import merge

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



@dataclass
class RawOutputs:
    """A batch's network outputs before NMS, as needed to combine several test-time augmentations.

    ``candidates``: per image, pre-NMS detections in that image's pixel coordinates;
    ``stuff_logits``: per image (S + 1, h, w) at its (unpadded) input size;
    ``mask_features``: mask sub-net outputs on P3..P5 of the padded batch of ``padded_size``.
    """

    image_sizes: list[tuple[int, int]]
    padded_size: tuple[int, int]
    candidates: list[Detections]
    stuff_logits: list[Tensor]
    mask_features: list[Tensor]


class SpatialFlow(nn.Module):
    """The SpatialFlow panoptic segmentation network; ``cfg`` names every ablation switch.

    ``inference`` (mmdetection's ``test_cfg``) only changes what ``model(images)`` returns in eval mode;
    it can be replaced on a trained model (``model.inference = InferenceConfig(...)``).
    """

    def __init__(self, cfg: SpatialFlowConfig, inference: InferenceConfig | dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.inference = inference_config(inference)
        c, a = cfg.fpn_channels, cfg.num_anchors
        self.backbone = ResNetFPN(
            cfg.depth, c, dcn=cfg.dcn, pretrained=cfg.pretrained_backbone, weights=cfg.backbone_weights,
            frozen_stages=cfg.frozen_stages, norm=cfg.backbone_norm, width=cfg.backbone_width,
        )
        self.subnets = SubNetworks(cfg)
        self.cls_head = ClassificationHead(c, a, cfg.num_things)
        self.reg_head = RegressionHead(c, a)
        self.stuff_head = StuffHead(c, cfg.stuff_channels, cfg.num_stuff + 1, cfg.stuff_groups,
                                    dcn=cfg.stuff_head_dcn)
        self.mask_head = MaskHead(c, cfg.mask_channels, cfg.num_things, aligned=cfg.roi_align_aligned)
        self.anchors = Anchors(cfg)
        self.box_coder = box_coder()
        self.matcher = det_utils.Matcher(cfg.fg_iou_thresh, cfg.bg_iou_thresh, allow_low_quality_matches=True)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ shared trunk
    def _batch(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        if not images:
            raise ValueError("SpatialFlow needs at least one image")
        for img in images:
            if img.ndim != 3 or img.shape[0] != 3 or not img.is_floating_point():
                raise ValueError(f"images must be float (3, H, W) tensors in [0, 1], got {tuple(img.shape)} "
                                 f"{img.dtype}")
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, _ = pad_images([(img - self.pixel_mean) / self.pixel_std for img in images])
        return batch, sizes

    def _trunk(self, batch: Tensor):
        features = self.backbone(batch)
        sub = self.subnets(features)
        cls = [self.cls_head(x) for x in sub.cls]  # per level (B, HWA, K)
        reg = [self.reg_head(x) for x in sub.reg]  # per level (B, HWA, 4)
        anchors = self.anchors([tuple(f.shape[-2:]) for f in features], batch.dtype, batch.device)
        stuff = self.stuff_head(sub.stuff)  # (B, S + 1, H_pad, W_pad)
        return sub, cls, reg, anchors, stuff

    def forward(
        self, images: list[Tensor], targets: list[dict] | None = None, *, return_stuff_logits: bool = False
    ) -> dict[str, Tensor] | list[dict]:
        if self.training:
            if targets is None:
                raise ValueError("SpatialFlow in training mode needs targets")
            return self.compute_losses(images, targets)
        raw = self.raw_outputs(images)
        test = self.inference
        detections = [nms_top(c, test.nms_thresh, test.max_detections) for c in raw.candidates]
        probs = self.mask_probabilities(raw.mask_features, raw.padded_size, detections)
        return [
            self.finalize(d, p, s, return_stuff_logits=return_stuff_logits)
            for d, p, s in zip(detections, probs, raw.stuff_logits)
        ]

    # ------------------------------------------------------------------ training
    def compute_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """The four unweighted losses and ``total`` = cls + reg + mask + lambda * stuff."""
        cfg = self.cfg
        batch, sizes = self._batch(images)
        targets = [_training_target(t, size) for t, size in zip(targets, sizes)]
        sub, cls, reg, anchor_levels, stuff_logits = self._trunk(batch)
        anchors = torch.cat(anchor_levels)

        matched, target_deltas, target_labels = [], [], []
        offset = 0
        for t, size in zip(targets, sizes):
            m = match_anchors(anchors, t["boxes"], self.matcher)
            m[(m < 0) & ~anchors_inside(anchors, size)] = IGNORED  # negatives in the padding do not count
            pos = m >= 0
            target_deltas.append(self.box_coder.encode_single(t["boxes"][m[pos]], anchors[pos]))
            target_labels.append(t["labels"][m[pos]])
            matched.append(torch.where(m >= 0, m + offset, m))
            offset += t["boxes"].shape[0]
        cls_all = torch.cat(cls, dim=1)
        loss_cls, loss_reg = detection_losses(
            cls_all.reshape(-1, cls_all.shape[-1]),
            torch.cat(reg, dim=1).reshape(-1, 4),
            torch.cat(matched),
            torch.cat(target_deltas),
            torch.cat(target_labels),
            alpha=cfg.focal_alpha,
            gamma=cfg.focal_gamma,
        )

        proposals, proposal_gt = self._mask_proposals(cls, reg, anchor_levels, sizes, targets)
        padded = (batch.shape[-2], batch.shape[-1])
        mask_logits = self.mask_head(sub.mask, proposals, padded)
        loss_mask = mask_loss(
            mask_logits, proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], proposal_gt,
            target=cfg.mask_target,
        )

        stuff_target = pad_label_maps([t["stuff"] for t in targets], padded)
        loss_stuff = stuff_loss(stuff_logits, stuff_target, sizes if cfg.stuff_loss_norm == "unpadded" else None)
        total = loss_cls + loss_reg + loss_mask + cfg.stuff_loss_weight * loss_stuff
        return {"cls": loss_cls, "reg": loss_reg, "mask": loss_mask, "stuff": loss_stuff, "total": total}

    @torch.no_grad()
    def _mask_proposals(self, cls, reg, anchor_levels, sizes, targets) -> tuple[list[Tensor], list[Tensor]]:
        """Mask-head RoIs: detached detections (train NMS) + GT boxes, kept if IoU >= 0.5 to a GT."""
        cfg = self.cfg
        proposals, matched = [], []
        for i, (size, t) in enumerate(zip(sizes, targets)):
            gt = t["boxes"]
            if gt.numel() == 0:
                proposals.append(gt.new_zeros((0, 4)))
                matched.append(torch.zeros(0, dtype=torch.int64, device=gt.device))
                continue
            candidates = select_candidates(
                [c[i] for c in cls], [r[i] for r in reg], anchor_levels, size, self.box_coder,
                cfg.train_score_thresh, cfg.train_pre_nms_topk, cfg.train_candidate_ranking,
            )
            dets = nms_top(candidates, cfg.train_nms_thresh, cfg.train_max_proposals)
            boxes = torch.cat([dets.boxes, gt])
            best_iou, best_gt = box_iou(boxes, gt).max(dim=1)
            keep = best_iou >= cfg.mask_proposal_iou
            proposals.append(boxes[keep])
            matched.append(best_gt[keep])
        return proposals, matched

    # ------------------------------------------------------------------ inference
    def raw_outputs(self, images: list[Tensor]) -> RawOutputs:
        """Network outputs before NMS (pre-NMS candidates, stuff logits, mask features)."""
        test = self.inference
        batch, sizes = self._batch(images)
        sub, cls, reg, anchor_levels, stuff_logits = self._trunk(batch)
        candidates = [
            select_candidates(
                [c[i] for c in cls], [r[i] for r in reg], anchor_levels, size, self.box_coder,
                test.score_thresh, test.pre_nms_topk, test.candidate_ranking,
            )
            for i, size in enumerate(sizes)
        ]
        stuff = [stuff_logits[i, :, :h, :w] for i, (h, w) in enumerate(sizes)]
        return RawOutputs(sizes, (batch.shape[-2], batch.shape[-1]), candidates, stuff, sub.mask)

    def mask_probabilities(
        self, mask_features: list[Tensor], padded_size: tuple[int, int], detections: list[Detections]
    ) -> list[Tensor]:
        """Per image (N, 28, 28) mask probabilities of each detection's class."""
        counts = [d.boxes.shape[0] for d in detections]
        if sum(counts) == 0:
            m = 2 * self.mask_head.roi_align.output_size[0]
            return [mask_features[0].new_zeros((0, m, m)) for _ in detections]
        logits = self.mask_head(mask_features, [d.boxes for d in detections], padded_size)
        probs = select_class_masks(logits, torch.cat([d.labels for d in detections]))
        return list(probs.split(counts))

    def finalize(
        self, dets: Detections, mask_probs: Tensor, stuff_logits: Tensor, *, return_stuff_logits: bool = False
    ) -> dict:
        """One image's output dict: masks pasted at the stuff logits' size, stuff argmax, panoptic merge."""
        height, width = stuff_logits.shape[-2:]
        if dets.boxes.shape[0]:
            if self.inference.mask_paste == "grid_sample":
                masks = paste_masks_grid_sample(mask_probs, dets.boxes, (height, width)) > self.inference.mask_threshold
            else:
                masks = paste_masks_thresholded(mask_probs, dets.boxes, (height, width), self.inference.mask_threshold)
        else:
            masks = torch.zeros((0, height, width), dtype=torch.bool, device=stuff_logits.device)
        stuff = stuff_logits.argmax(dim=0)
        out = {"boxes": dets.boxes, "scores": dets.scores, "labels": dets.labels, "masks": masks, "stuff": stuff}
        if return_stuff_logits:
            out["stuff_logits"] = stuff_logits
        out["panoptic"] = merge(
            masks, dets.scores, dets.labels, stuff,
            other_index=self.cfg.num_stuff, config=self.inference.merge, boxes=dets.boxes,
        )
        return out


PASTE_CHUNK_PIXELS = 1 << 26  # masks pasted per chunk: at most this many float32 output pixels (256 MiB)


def paste_masks_thresholded(mask_probs: Tensor, boxes: Tensor, size: tuple[int, int], threshold: float) -> Tensor:
    """(N, M, M) mask probabilities in their boxes -> (N, H, W) bool masks: torchvision's legacy
    ``paste_masks_in_image(padding=1) > threshold``, bit for bit, without its full-size float image per mask
    (100 of them at 600x1000 are 240 MB and most of the time the eval forward spends beyond convolutions):
    each mask is resized into its own box and thresholded there."""
    height, width = size
    padded, scale = expand_masks(mask_probs[:, None], padding=1)
    out = torch.zeros((mask_probs.shape[0], height, width), dtype=torch.bool, device=mask_probs.device)
    for i, (x0, y0, x1, y1) in enumerate(expand_boxes(boxes, scale).to(torch.int64).tolist()):
        box_h, box_w = max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1)
        top, bottom, left, right = max(y0, 0), min(y1 + 1, height), max(x0, 0), min(x1 + 1, width)
        if bottom <= top or right <= left:
            continue
        resized = F.interpolate(padded[i : i + 1], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
        out[i, top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0] > threshold
    return out


def paste_masks_grid_sample(mask_probs: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """mmdet's ``_do_paste_mask`` (skip_empty=False): each (M, M) mask sampled bilinearly at the image's
    pixel centres mapped into its box (``grid_sample``, align_corners=False, zeros outside the box).
    (N, M, M) probabilities + (N, 4) boxes -> (N, H, W)."""
    height, width = size
    out = mask_probs.new_zeros((mask_probs.shape[0], height, width), dtype=torch.float32)
    step = max(1, PASTE_CHUNK_PIXELS // max(1, height * width))
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    for start in range(0, mask_probs.shape[0], step):
        b = boxes[start:start + step].float()
        x0, y0, x1, y1 = (b[:, i:i + 1] for i in range(4))
        gx = (xs[None] - x0) / (x1 - x0) * 2 - 1  # (n, W)
        gy = (ys[None] - y0) / (y1 - y0) * 2 - 1  # (n, H)
        gx = torch.where(torch.isinf(gx), torch.zeros_like(gx), gx)
        gy = torch.where(torch.isinf(gy), torch.zeros_like(gy), gy)
        n = b.shape[0]
        grid = torch.stack([gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)], 3)
        chunk = mask_probs[start:start + step, None].float()
        out[start:start + n] = F.grid_sample(chunk, grid, align_corners=False)[:, 0]
    return out


def _training_target(target: dict, size: tuple[int, int]) -> dict:
    """Checks one training target against its image; drops crowd instances (not used for training)."""
    boxes, labels, masks, stuff = target["boxes"], target["labels"], target["masks"], target["stuff"]
    n = boxes.shape[0]
    if boxes.shape != (n, 4) or labels.shape != (n,) or masks.shape[0] != n:
        raise ValueError(f"target has {n} boxes, labels {tuple(labels.shape)}, masks {tuple(masks.shape)}")
    if tuple(stuff.shape) != size or (n and tuple(masks.shape[-2:]) != size):
        raise ValueError(f"target stuff {tuple(stuff.shape)} / masks {tuple(masks.shape)} do not match image {size}")
    keep = ~target.get("iscrowd", torch.zeros(n, dtype=torch.bool, device=boxes.device)).bool()
    return {"boxes": boxes[keep].float(), "labels": labels[keep].long(), "masks": masks[keep], "stuff": stuff.long()}
