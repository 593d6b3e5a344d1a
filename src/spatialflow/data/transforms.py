"""Training transforms applied consistently to the image, instance masks, boxes and stuff map.

Each transform is a callable ``(image, target) -> (image, target)`` on what :class:`PanopticDataset`
returns: image float32 (3, H, W); target ``boxes`` float32 (N, 4) xyxy, ``labels``, ``masks`` uint8
(N, H, W), ``iscrowd``, ``stuff`` int64 (H, W). Images are resized bilinearly, masks and the stuff map
with nearest neighbour; boxes are recomputed exactly from the resized masks, and instances whose mask
vanishes (tiny objects after down-scaling, objects outside a crop) are dropped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

Target = dict
Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target


def masks_to_boxes_exclusive(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) non-empty masks -> (N, 4) float32 xyxy boxes with COCO-style exclusive x2/y2."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    boxes = masks_to_boxes(masks.bool()).float()  # inclusive max corner
    boxes[:, 2:] += 1
    return boxes


def _with_masks(target: Target, masks: torch.Tensor, stuff: torch.Tensor) -> Target:
    """Copy of ``target`` with new masks / stuff map; empty instances dropped, boxes recomputed."""
    keep = masks.flatten(1).bool().any(dim=1)
    out = dict(target)
    out["masks"] = masks[keep]
    out["labels"] = target["labels"][keep]
    out["iscrowd"] = target["iscrowd"][keep]
    out["boxes"] = masks_to_boxes_exclusive(out["masks"])
    out["stuff"] = stuff
    return out


def resize(image: torch.Tensor, target: Target, size: tuple[int, int]) -> tuple[torch.Tensor, Target]:
    """Resize to ``size`` = (H, W): image bilinear, masks and stuff nearest, boxes from masks."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, target
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    image = image.clamp_(0.0, 1.0)
    masks = target["masks"]
    if masks.shape[0]:
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0].to(torch.uint8)
    else:
        masks = masks.new_zeros((0, *size))
    stuff = F.interpolate(target["stuff"][None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, _with_masks(target, masks, stuff)


def shorter_side_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """Output (H, W) with the shorter side ``short`` unless that makes the longer side exceed ``max_size``."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class ResizeShorterSide:
    """Resize so the shorter side is ``short`` (one picked at random from a tuple), longer side <= max_size."""

    def __init__(self, short: int | tuple[int, ...], max_size: int) -> None:
        self.short = (short,) if isinstance(short, int) else tuple(short)
        self.max_size = max_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        short = self.short[0] if len(self.short) == 1 else random.choice(self.short)
        size = shorter_side_size(image.shape[-2], image.shape[-1], short, self.max_size)
        return resize(image, target, size)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.p:
            return image, target
        width = image.shape[-1]
        out = dict(target)
        out["masks"] = target["masks"].flip(-1)
        out["stuff"] = target["stuff"].flip(-1)
        boxes = target["boxes"].clone()
        boxes[:, 0] = width - target["boxes"][:, 2]
        boxes[:, 2] = width - target["boxes"][:, 0]
        out["boxes"] = boxes
        return image.flip(-1), out


class RandomScaleCrop:
    """Scale by a factor drawn uniformly from ``scale``, then take a random ``crop`` = (H, W) window.

    The Cityscapes recipe (scale 0.5-2.0, 512x1024 crops). A scaled image smaller than the crop is kept
    whole along that side (batching pads it later).
    """

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0), crop: tuple[int, int] = (512, 1024)) -> None:
        self.scale = scale
        self.crop = crop

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        factor = random.uniform(*self.scale)
        height, width = image.shape[-2:]
        size = (max(1, int(math.floor(height * factor + 0.5))), max(1, int(math.floor(width * factor + 0.5))))
        image, target = resize(image, target, size)
        crop_h, crop_w = min(self.crop[0], size[0]), min(self.crop[1], size[1])
        top = random.randint(0, size[0] - crop_h)
        left = random.randint(0, size[1] - crop_w)
        return crop(image, target, top, left, crop_h, crop_w)


def crop(image: torch.Tensor, target: Target, top: int, left: int, height: int, width: int
         ) -> tuple[torch.Tensor, Target]:
    """Cut the window [top, top+height) x [left, left+width); instances left empty are dropped."""
    rows, cols = slice(top, top + height), slice(left, left + width)
    return image[:, rows, cols], _with_masks(target, target["masks"][:, rows, cols], target["stuff"][rows, cols])
