"""Pictures of panoptic segmentations: category-coloured segment maps, overlays, side-by-side figures."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from spatialflow.data.panoptic_ids import VOID_ID
from spatialflow.utils.atomic import atomic_save_image


def _category_color(category: dict) -> np.ndarray:
    if "color" in category:
        return np.asarray(category["color"], dtype=np.float32)
    rng = np.random.default_rng(int(category["id"]))  # stable colour for categories without one
    return rng.uniform(40, 255, 3).astype(np.float32)


def panoptic_colors(panoptic_ids: np.ndarray, segments: list[dict], categories: list[dict]) -> np.ndarray:
    """(H, W, 3) uint8 colouring: each segment in its category colour (thing instances slightly varied),
    void black, segment borders white."""
    by_id = {c["id"]: c for c in categories}
    out = np.zeros(panoptic_ids.shape + (3,), dtype=np.float32)
    for k, seg in enumerate(segments):
        color = _category_color(by_id[seg["category_id"]])
        if by_id[seg["category_id"]].get("isthing", 0):
            color = np.clip(color * (0.75 + 0.5 * ((k * 0.618) % 1.0)), 0, 255)
        out[panoptic_ids == seg["id"]] = color
    border = np.zeros(panoptic_ids.shape, dtype=bool)
    border[:, 1:] |= panoptic_ids[:, 1:] != panoptic_ids[:, :-1]
    border[1:, :] |= panoptic_ids[1:, :] != panoptic_ids[:-1, :]
    out[border & (panoptic_ids != VOID_ID)] = 255
    return out.astype(np.uint8)


def panoptic_overlay(
    image: np.ndarray,
    panoptic_ids: np.ndarray,
    segments: list[dict],
    categories: list[dict],
    alpha: float = 0.6,
) -> np.ndarray:
    """Blend the panoptic colouring over an (H, W, 3) uint8 image; void pixels keep the image."""
    colors = panoptic_colors(panoptic_ids, segments, categories).astype(np.float32)
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colors
    blend[panoptic_ids == VOID_ID] = image[panoptic_ids == VOID_ID]
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def save_side_by_side(path: str | os.PathLike, panels: list[np.ndarray], scale: int = 1, gap: int = 4) -> None:
    """Save (H, W, 3) uint8 panels left to right (white gap), enlarged ``scale`` times (nearest), as PNG."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for panel in panels:
        canvas[:panel.shape[0], x:x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    img = Image.fromarray(canvas)
    if scale != 1:
        img = img.resize((width * scale, height * scale), Image.NEAREST)
    atomic_save_image(path, img)


def heatmap_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A [0, 1] heat-map in the 'jet' colour map blended over an (H, W, 3) uint8 image."""
    from matplotlib import colormaps

    colors = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * colors + 0.5, 0, 255).astype(np.uint8)
