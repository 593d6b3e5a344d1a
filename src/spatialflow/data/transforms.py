"""Training transforms applied consistently to the image, instance masks, boxes and stuff map.

Each transform is a callable ``(image, target) -> (image, target)`` on what :class:`PanopticDataset`
returns: image float32 (3, H, W); target ``boxes`` float32 (N, 4) xyxy, ``labels``, ``masks`` uint8
(N, H, W), ``iscrowd``, ``stuff`` int64 (H, W). The geometry is torchvision.transforms.v2's, dispatched on
tv_tensors (:class:`~torchvision.tv_tensors.Image`, :class:`~torchvision.tv_tensors.Mask`,
:class:`~torchvision.tv_tensors.BoundingBoxes`): images are resized bilinearly with antialiasing, masks and
the stuff map (ignore value included) with nearest neighbour. After a resize or crop, boxes are recomputed
exactly from the masks and instances whose mask vanished (tiny objects after down-scaling, objects outside a
crop) are dropped with ``sanitize_bounding_boxes``.

The random parameters (shorter side, flip, scale, crop window) are drawn with Python's :mod:`random`. In
training, :class:`spatialflow.data.dataset.EpochSamples` seeds it for each sample from (seed, epoch, sample
index), so the draws do not depend on the data-loader worker that runs the transform.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

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


def resized_size(size: tuple[int, int], short: int, max_size: int) -> tuple[int, int]:
    """(H, W) scaled so the shorter side is ``short`` unless the longer side would exceed ``max_size``.

    The one resize rule of training (:class:`ResizeShorterSide`) and inference (``predict``): the scale is
    ``min(short / shorter side, max_size / longer side)``, as mmcv's ``rescale_size`` with
    ``scale=(max_size, short)``; sides are rounded half to even (mmcv rounds half up: only exact .5 differ).
    """
    height, width = int(size[0]), int(size[1])
    scale = min(short / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def masks_to_boxes_exclusive(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) masks -> (N, 4) float32 xyxy boxes with COCO-style exclusive x2/y2; empty masks -> zeros."""
    boxes = masks_to_boxes(masks).float()  # inclusive max corner; [0, 0, 0, 0] for an empty mask
    boxes[:, 2:] += masks.flatten(1).any(dim=1, keepdim=True)
    return boxes


def _plain(x: torch.Tensor) -> torch.Tensor:
    """A tv_tensor back to a plain tensor (the model, collation and workers never see the subclasses)."""
    return x.as_subclass(torch.Tensor)


def _with_masks(target: Target, masks: torch.Tensor, stuff: torch.Tensor) -> Target:
    """Copy of ``target`` with new masks / stuff map; boxes recomputed, empty instances dropped."""
    size = tuple(stuff.shape[-2:])
    boxes = tv_tensors.BoundingBoxes(masks_to_boxes_exclusive(masks), format="XYXY", canvas_size=size)
    _, keep = TF.sanitize_bounding_boxes(boxes, min_size=1)
    out = dict(target)
    out["masks"] = _plain(masks)[keep]
    out["labels"] = target["labels"][keep]
    out["iscrowd"] = target["iscrowd"][keep]
    out["boxes"] = _plain(boxes)[keep]
    out["stuff"] = _plain(stuff)
    return out


def resize(image: torch.Tensor, target: Target, size: tuple[int, int]) -> tuple[torch.Tensor, Target]:
    """Resize to ``size`` = (H, W): image bilinear (antialiased), masks and stuff nearest, boxes from masks."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, target
    size = [int(size[0]), int(size[1])]
    image = TF.resize(tv_tensors.Image(image), size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    masks = TF.resize(tv_tensors.Mask(target["masks"]), size, interpolation=InterpolationMode.NEAREST)
    stuff = TF.resize(tv_tensors.Mask(target["stuff"]), size, interpolation=InterpolationMode.NEAREST)
    return _plain(image).clamp_(0.0, 1.0), _with_masks(target, masks, stuff)


def crop(image: torch.Tensor, target: Target, top: int, left: int, height: int, width: int
         ) -> tuple[torch.Tensor, Target]:
    """Cut the window [top, top+height) x [left, left+width); instances left empty are dropped."""
    window = dict(top=top, left=left, height=height, width=width)
    masks = TF.crop(tv_tensors.Mask(target["masks"]), **window)
    stuff = TF.crop(tv_tensors.Mask(target["stuff"]), **window)
    return _plain(TF.crop(tv_tensors.Image(image), **window)), _with_masks(target, masks, stuff)


class ResizeShorterSide:
    """Resize so the shorter side is ``short`` (one picked at random from a tuple), longer side <= max_size.

    mmdet's ``multiscale_mode='value'`` (a list of scales) with ``keep_ratio=True``.
    """

    def __init__(self, short: int | tuple[int, ...], max_size: int) -> None:
        self.short = (short,) if isinstance(short, int) else tuple(short)
        self.max_size = max_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        short = self.short[0] if len(self.short) == 1 else random.choice(self.short)
        return resize(image, target, resized_size(image.shape[-2:], short, self.max_size))


class ResizeShorterSideRange:
    """Resize with the shorter side drawn uniformly from the integers ``short_range`` = (low, high), both
    included, and the longer side at most ``max_size``: mmdet 2.x ``multiscale_mode='range'``.

    mmdet's ``Resize.random_sample`` (mmdet/datasets/pipelines/transforms.py, mmdet 2.x; the authors' Table 6
    config chensnathan/SpatialFlow configs/spatialflow/spatialflow_r101_dcn_fpn_20e_coco_multiscale_fp16.py:
    ``img_scale=[(1600, 400), (1600, 1400)]``) takes the two ``img_scale`` tuples and draws
    ``long_edge = np.random.randint(min(longs), max(longs) + 1)`` and
    ``short_edge = np.random.randint(min(shorts), max(shorts) + 1)``; with ``keep_ratio=True`` mmcv's
    ``rescale_size`` then scales by ``min(long_edge / longer side, short_edge / shorter side)``. Here the
    long edge is the fixed ``max_size`` (both of the authors' tuples have 1600), so this is the same rule:
    an integer shorter side in [low, high] fed to :func:`resized_size`.
    """

    def __init__(self, short_range: tuple[int, int], max_size: int) -> None:
        low, high = short_range
        if not 1 <= low <= high:
            raise ValueError(f"short_range must be (low, high) with 1 <= low <= high, got {short_range}")
        self.short_range = (int(low), int(high))
        self.max_size = max_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        short = random.randint(*self.short_range)
        return resize(image, target, resized_size(image.shape[-2:], short, self.max_size))


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.p:
            return image, target
        size = tuple(image.shape[-2:])
        boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)
        out = dict(target)
        out["masks"] = _plain(TF.horizontal_flip(tv_tensors.Mask(target["masks"])))
        out["stuff"] = _plain(TF.horizontal_flip(tv_tensors.Mask(target["stuff"])))
        out["boxes"] = _plain(TF.horizontal_flip(boxes))
        return _plain(TF.horizontal_flip(tv_tensors.Image(image))), out


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
        size = (max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5)))
        image, target = resize(image, target, size)
        crop_h, crop_w = min(self.crop[0], size[0]), min(self.crop[1], size[1])
        top = random.randint(0, size[0] - crop_h)
        left = random.randint(0, size[1] - crop_w)
        return crop(image, target, top, left, crop_h, crop_w)
