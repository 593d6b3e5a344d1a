"""Batched inference and test-time augmentation (multi-scale + horizontal flip, paper Tables 6 and 7).

TTA combines the augmentations the way the reference does: pre-NMS detection candidates of every
scale / flip are mapped back to the original image and go through one NMS together; the mask head then
runs on the merged boxes at every scale / flip and the 28x28 mask probabilities are averaged; stuff
logits are resized to the original size (and un-flipped) and averaged before the argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from spatialflow.data.transforms import resized_size  # the one resize rule, shared with training
from spatialflow.errors import ConfigError
from spatialflow.models.detection import Detections, nms_top
from spatialflow.models.spatialflow import SpatialFlow


@dataclass
class TTAConfig:
    """Test-time scales as (shorter side, maximum longer side) pairs, each optionally also flipped."""

    scales: list[tuple[int, int]] = field(default_factory=list)
    flip: bool = True

    def __post_init__(self) -> None:
        self.scales = [(int(s), int(m)) for s, m in self.scales]
        if not self.scales or any(s < 1 or m < s for s, m in self.scales):
            raise ConfigError(f"TTA scales must be non-empty (short, max) pairs with max >= short: {self.scales}")


# The paper's lists (supplement), written by the reference code as (long, short) and here as (short, max).
TTA_PRESETS: dict[str, TTAConfig] = {
    "coco": TTAConfig(scales=[(1000, 1500), (1200, 1800), (1400, 2100)], flip=True),
    "cityscapes": TTAConfig(scales=[(1152, 2304), (1216, 2432), (1280, 2560), (1344, 2688)], flip=True),
}


def predict(
    model: SpatialFlow,
    images: list[Tensor],
    tta: TTAConfig | None = None,
    *,
    batch_size: int = 2,
    return_stuff_logits: bool = False,
    progress: bool = False,
) -> list[dict]:
    """Run ``model`` on float (3, H, W) images in [0, 1]; the same per-image dicts as the model's eval
    forward, at each image's own size. ``tta`` = None: plain inference."""
    was_training = model.training
    model.eval()
    results: list[dict] = []
    try:
        with torch.inference_mode():
            starts = range(0, len(images), batch_size)
            for start in tqdm(starts, desc="predict", unit="batch", disable=not progress):
                chunk = images[start : start + batch_size]
                if tta is None:
                    results += model(chunk, return_stuff_logits=return_stuff_logits)
                else:
                    results += _predict_tta(model, chunk, tta, return_stuff_logits)
    finally:
        model.train(was_training)
    return results


def _flip_boxes(boxes: Tensor, width: int) -> Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def _map_boxes(boxes: Tensor, src: tuple[int, int], dst: tuple[int, int]) -> Tensor:
    """Boxes in an image of size ``src`` -> the same boxes in the image resized to ``dst``."""
    sx, sy = dst[1] / src[1], dst[0] / src[0]
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def _predict_tta(model: SpatialFlow, images: list[Tensor], tta: TTAConfig, return_stuff_logits: bool) -> list[dict]:
    test = model.inference
    originals = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
    candidates: list[list[Detections]] = [[] for _ in images]
    stuff_sum: list[Tensor | int] = [0 for _ in images]
    augmentations = []  # (raw outputs, per-image augmented sizes, flipped)
    for short, max_size in tta.scales:
        sizes = [resized_size(size, short, max_size) for size in originals]
        resized = [_resize(img, size) for img, size in zip(images, sizes)]
        for flip in (False, True) if tta.flip else (False,):
            raw = model.raw_outputs([img.flip(-1) if flip else img for img in resized])
            for i, (orig, size) in enumerate(zip(originals, sizes)):
                c = raw.candidates[i]
                boxes = _flip_boxes(c.boxes, size[1]) if flip else c.boxes
                candidates[i].append(Detections(_map_boxes(boxes, size, orig), c.scores, c.labels))
                logits = raw.stuff_logits[i].flip(-1) if flip else raw.stuff_logits[i]
                stuff_sum[i] = stuff_sum[i] + _resize(logits, orig)
            augmentations.append((raw, sizes, flip))

    detections = [nms_top(Detections.cat(c), test.nms_thresh, test.max_detections) for c in candidates]
    prob_sum: list[Tensor | int] = [0 for _ in images]
    for raw, sizes, flip in augmentations:
        mapped = []
        for d, orig, size in zip(detections, originals, sizes):
            boxes = _map_boxes(d.boxes, orig, size)
            mapped.append(Detections(_flip_boxes(boxes, size[1]) if flip else boxes, d.scores, d.labels))
        probs = model.mask_probabilities(raw.mask_features, raw.padded_size, mapped)
        for i, p in enumerate(probs):
            prob_sum[i] = prob_sum[i] + (p.flip(-1) if flip else p)

    n = len(augmentations)
    return [
        model.finalize(d, p / n, s / n, return_stuff_logits=return_stuff_logits)
        for d, p, s in zip(detections, prob_sum, stuff_sum)
    ]
