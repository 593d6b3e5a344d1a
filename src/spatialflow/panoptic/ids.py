"""COCO-panoptic segment ids <-> PNG colours: ``id = R + 256 * G + 256**2 * B``; 0 is void."""

from __future__ import annotations

import numpy as np

VOID_ID = 0


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) int64 segment ids."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.int64, copy=False)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) integer segment ids -> (H, W, 3) uint8 colours."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256**3:
        raise ValueError("segment ids must lie in [0, 256**3)")
    rgb = np.empty(ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = (ids // 256) % 256
    rgb[..., 2] = ids // 65536
    return rgb
