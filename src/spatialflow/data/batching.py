"""Batching images of different sizes: zero-pad to a common size divisible by 32, with a valid mask."""

from __future__ import annotations

import math

import torch

from spatialflow.data.categories import IGNORE_INDEX


def padded_size(sizes: list[tuple[int, int]], size_divisible: int = 32) -> tuple[int, int]:
    """Smallest (H, W) holding every size, rounded up to a multiple of ``size_divisible``."""
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    return (
        int(math.ceil(height / size_divisible) * size_divisible),
        int(math.ceil(width / size_divisible) * size_divisible),
    )


def pad_images(images: list[torch.Tensor], size_divisible: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (C, H_i, W_i) images -> (B, C, H, W) zero-padded batch and (B, H, W) bool valid mask.

    Images sit in the top-left corner, so pixel coordinates (and boxes) are unchanged by padding.
    """
    if not images:
        raise ValueError("pad_images needs at least one image")
    height, width = padded_size([tuple(img.shape[-2:]) for img in images], size_divisible)
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    valid = torch.zeros((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for i, img in enumerate(images):
        h, w = img.shape[-2:]
        batch[i, :, :h, :w] = img
        valid[i, :h, :w] = True
    return batch, valid


def pad_label_maps(maps: list[torch.Tensor], size: tuple[int, int], fill: int = IGNORE_INDEX) -> torch.Tensor:
    """List of (H_i, W_i) label maps -> (B, H, W) padded with ``fill`` (ignored by the losses)."""
    out = maps[0].new_full((len(maps), *size), fill)
    for i, label_map in enumerate(maps):
        h, w = label_map.shape[-2:]
        out[i, :h, :w] = label_map
    return out
