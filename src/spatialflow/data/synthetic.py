"""Synthetic panoptic data in exact COCO-panoptic format, small enough to train on a CPU.

Two presets:

- ``shapes-coco``: square-ish scenes; 8 thing classes that differ by shape *and* colour (circle, square,
  triangle, diamond, cross, ring, star, L), 6 stuff classes that differ by texture, laid out as random
  regions with void seams and void blobs.
- ``shapes-cityscapes``: wide street scenes; sky, building, vegetation, sidewalk and road bands, and
  3 thing classes standing on the ground (person, car, truck), bigger when closer.

Instances overlap (later ones occlude earlier ones), touch, and sometimes form a crowd segment
(``iscrowd=1``); some images have no things. Everything is drawn from ``numpy.random.default_rng``
seeded per (seed, split, image), so the same arguments give byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from spatialflow.data.coco_panoptic import PanopticWriter, SplitPaths
from spatialflow.utils.atomic import atomic_save_image

SPLITS = ("train", "val", "test-dev")
#: Image sides (pixels) the generator accepts: the shapes need 32 px; above 4096 an image is only a memory sink.
MIN_SIZE, MAX_SIZE = 32, 4096


@dataclass(frozen=True)
class ThingClass:
    name: str
    color: tuple[int, int, int]
    shape: str  # a key of SHAPES


@dataclass(frozen=True)
class StuffClass:
    name: str
    color: tuple[int, int, int]
    texture: str  # a key of TEXTURES


@dataclass(frozen=True)
class Preset:
    name: str
    things: tuple[ThingClass, ...]
    stuff: tuple[StuffClass, ...]
    size: tuple[int, int]  # default (H, W)
    layout: str  # "regions" (COCO-like) or "street" (Cityscapes-like)
    max_things: int

    def categories(self) -> list[dict]:
        """COCO-panoptic categories: things first (ids 1..K), then stuff (K+1..K+S)."""
        cats = [{"id": i + 1, "name": t.name, "isthing": 1, "color": list(t.color), "supercategory": "shape"}
                for i, t in enumerate(self.things)]
        cats += [{"id": len(self.things) + i + 1, "name": s.name, "isthing": 0, "color": list(s.color),
                  "supercategory": "texture"} for i, s in enumerate(self.stuff)]
        return cats


PRESETS: dict[str, Preset] = {
    "shapes-coco": Preset(
        name="shapes-coco",
        things=(
            ThingClass("circle", (230, 40, 40), "circle"),
            ThingClass("square", (40, 80, 235), "square"),
            ThingClass("triangle", (250, 210, 20), "triangle"),
            ThingClass("diamond", (220, 40, 220), "diamond"),
            ThingClass("cross", (20, 220, 230), "cross"),
            ThingClass("ring", (250, 130, 10), "ring"),
            ThingClass("star", (245, 245, 245), "star"),
            ThingClass("ell", (120, 30, 160), "ell"),
        ),
        stuff=(
            StuffClass("sky", (150, 190, 225), "gradient"),
            StuffClass("grass", (70, 130, 50), "noise"),
            StuffClass("water", (40, 70, 120), "hstripes"),
            StuffClass("wall", (150, 140, 130), "bricks"),
            StuffClass("sand", (200, 180, 130), "dots"),
            StuffClass("wood", (120, 80, 50), "vstripes"),
        ),
        size=(128, 128),
        layout="regions",
        max_things=6,
    ),
    "shapes-cityscapes": Preset(
        name="shapes-cityscapes",
        things=(
            ThingClass("person", (220, 20, 60), "person"),
            ThingClass("car", (30, 60, 220), "car"),
            ThingClass("truck", (0, 170, 170), "truck"),
        ),
        stuff=(
            StuffClass("road", (128, 64, 128), "noise"),
            StuffClass("sidewalk", (230, 150, 200), "dots"),
            StuffClass("building", (90, 90, 90), "windows"),
            StuffClass("vegetation", (107, 142, 35), "noise"),
            StuffClass("sky", (70, 130, 180), "gradient"),
        ),
        size=(96, 192),
        layout="street",
        max_things=6,
    ),
}

MIN_OBJECT_FRACTION = 12 / 128  # smallest object side relative to the image's shorter side
NOISE_SIGMA = 6.0  # per-pixel Gaussian noise on the final image (0-255 scale)
P_NO_THINGS = 0.08
P_CROWD = 0.2
P_TOUCH = 0.3
MIN_VISIBLE = 0.4  # instances less visible than this after occlusion are removed


# ------------------------------------------------------------------------------------------- shapes


def _unit_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates u (x) and v (y, downwards) in [-1, 1] over an h x w box."""
    v = (np.arange(h) + 0.5) / h * 2 - 1
    u = (np.arange(w) + 0.5) / w * 2 - 1
    return u[None, :], v[:, None]


def _shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Bool (h, w) mask of ``shape`` filling an h x w box."""
    u, v = _unit_grid(h, w)
    r = np.sqrt(u**2 + v**2)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.ones((h, w), dtype=bool)
    if shape == "triangle":
        return np.abs(u) <= (v + 1) / 2
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.5)
    if shape == "star":
        theta = np.arctan2(v, u)
        return r <= 0.45 + 0.55 * (0.5 + 0.5 * np.cos(5 * (theta + np.pi / 2)))
    if shape == "ell":
        return (u <= -0.2) | (v >= 0.2)
    if shape == "person":  # head on a body
        head = (u / 0.5) ** 2 + ((v + 0.72) / 0.28) ** 2 <= 1.0
        body = (v >= -0.45) & (np.abs(u) <= 0.85 - 0.25 * np.clip(v, 0, 1))
        return head | body
    if shape == "car":  # cabin on a wide body
        return (v >= -0.1) | ((v >= -1.0) & (np.abs(u) <= 0.55 - 0.2 * (v < -0.8)))
    if shape == "truck":  # tall box with a lower cab in front
        return (u <= 0.35) | (v >= -0.3)
    raise ValueError(f"unknown shape {shape!r}")


# ------------------------------------------------------------------------------------------ textures


def _texture(kind: str, color: tuple[int, int, int], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float image of a stuff texture with a random phase."""
    base = np.asarray(color, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        shade = 1.15 - 0.3 * yy / max(h - 1, 1)
    elif kind == "noise":
        shade = 1.0 + rng.normal(0.0, 0.18, (h, w)).astype(np.float32)
    elif kind == "hstripes":
        shade = 1.0 + 0.25 * np.sign(np.sin(2 * np.pi * (yy / 6.0 + rng.random())))
    elif kind == "vstripes":
        shade = 1.0 + 0.25 * np.sign(np.sin(2 * np.pi * (xx / 6.0 + rng.random())))
    elif kind == "bricks":
        oy, ox = rng.integers(0, 8, 2)
        row = (yy + oy) // 6
        mortar = (((yy + oy) % 6) < 1) | (((xx + ox + 5 * (row % 2)) % 10) < 1)
        shade = np.where(mortar, 0.6, 1.0)
    elif kind == "dots":
        oy, ox = rng.integers(0, 5, 2)
        shade = np.where((((yy + oy) % 5) < 2) & (((xx + ox) % 5) < 2), 0.7, 1.05)
    elif kind == "windows":
        oy, ox = rng.integers(0, 7, 2)
        shade = np.where((((yy + oy) % 7) < 3) & (((xx + ox) % 7) < 3), 1.7, 1.0)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return base[None, None, :] * np.asarray(shade, dtype=np.float32)[..., None]


# ------------------------------------------------------------------------------------------- layouts


@dataclass
class _Instance:
    label: int  # contiguous thing index
    boxes: list[tuple[int, int, int, int]]  # one (y, x, h, w) per part; a crowd has several parts
    color: np.ndarray
    iscrowd: bool = False


def _regions_layout(preset: Preset, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w) stuff index map (-1 = void): Voronoi regions of 2-4 stuff classes, void seams and blobs."""
    n = int(rng.integers(2, 5))
    classes = rng.choice(len(preset.stuff), size=n, replace=False)
    seeds = rng.random((n, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.sqrt((yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2)
    order = np.sort(dist, axis=0)
    stuff = classes[np.argmin(dist, axis=0)].astype(np.int64)
    if rng.random() < 0.5:  # void seams between regions, like COCO's unlabeled borders
        stuff[(order[1] - order[0]) < 1.5] = -1
    if rng.random() < 0.3:  # a void blob
        bh, bw = int(rng.integers(h // 10, h // 4)), int(rng.integers(w // 10, w // 4))
        y0, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        stuff[y0:y0 + bh, x0:x0 + bw] = -1
    return stuff


def _street_layout(preset: Preset, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(h, w) stuff index map (-1 = void) of a street: sky, buildings, trees, sidewalk, road; + horizon y."""
    index = {s.name: i for i, s in enumerate(preset.stuff)}
    horizon = int(h * rng.uniform(0.4, 0.5))
    stuff = np.full((h, w), index["sky"], dtype=np.int64)
    x = 0
    while x < w:  # building blocks of random width and height
        bw = int(rng.integers(w // 10, w // 4))
        top = int(rng.uniform(0.05, 0.3) * h)
        stuff[top:horizon, x:x + bw] = index["building"]
        x += bw + int(rng.integers(0, w // 12))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 4))):  # trees in front of the buildings
        cy, cx = horizon - rng.uniform(0.1, 0.2) * h, rng.uniform(0, w)
        ry, rx = rng.uniform(0.08, 0.16) * h, rng.uniform(0.05, 0.12) * w
        stuff[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = index["vegetation"]
    sidewalk = horizon + max(2, int(0.08 * h))
    stuff[horizon:sidewalk] = index["sidewalk"]
    stuff[sidewalk:] = index["road"]
    if rng.random() < 0.3:  # ego-vehicle hood: void, as in Cityscapes
        stuff[h - max(2, h // 16):] = -1
    return stuff, horizon


def _regions_things(preset: Preset, h: int, w: int, rng: np.random.Generator, scale: float = 1.0
                    ) -> list[_Instance]:
    short = min(h, w)
    lo, hi = MIN_OBJECT_FRACTION * scale * short, min(0.4 * scale, 0.9) * short
    instances: list[_Instance] = []
    for _ in range(int(rng.integers(1, preset.max_things + 1))):
        label = int(rng.integers(len(preset.things)))
        oh = int(rng.uniform(lo, hi))
        ow = int(np.clip(oh * rng.uniform(0.75, 1.33), lo, hi))
        if instances and rng.random() < P_TOUCH:  # touch the previous instance on its right
            py, px, ph, pw = instances[-1].boxes[0]
            y, x = py + int(rng.integers(-ph // 4, ph // 4 + 1)), px + pw
        else:
            y, x = int(rng.integers(-oh // 4, h - 3 * oh // 4)), int(rng.integers(-ow // 4, w - 3 * ow // 4))
        instances.append(_Instance(label, [(y, x, oh, ow)], _jitter(preset.things[label].color, rng)))
    return instances


def _street_things(preset: Preset, h: int, w: int, horizon: int, rng: np.random.Generator, scale: float = 1.0
                   ) -> list[_Instance]:
    """People, cars and trucks standing on the ground; nearer (lower) ones are bigger."""
    size_range = {"person": (0.3, 0.55, 0.45), "car": (0.18, 0.33, 1.8), "truck": (0.3, 0.5, 1.25)}  # h/H, w/h
    instances: list[_Instance] = []
    for _ in range(int(rng.integers(1, preset.max_things + 1))):
        label = int(rng.integers(len(preset.things)))
        lo, hi, aspect = size_range[preset.things[label].shape]
        depth = rng.random()  # 0 far (near the horizon), 1 near
        oh = int(h * min(0.95, scale * (lo + depth * (hi - lo))))
        ow = max(int(MIN_OBJECT_FRACTION * scale * min(h, w)), int(oh * aspect))
        bottom = int(horizon + 0.15 * (h - horizon) + depth * 0.85 * (h - horizon))
        if instances and rng.random() < P_TOUCH:
            x = instances[-1].boxes[0][1] + instances[-1].boxes[0][3]
        else:
            x = int(rng.integers(-ow // 4, w - 3 * ow // 4))
        instances.append(_Instance(label, [(bottom - oh, x, oh, ow)], _jitter(preset.things[label].color, rng)))
    instances.sort(key=lambda inst: inst.boxes[0][0] + inst.boxes[0][2])  # far first: near ones occlude
    return instances


def _crowd(preset: Preset, h: int, w: int, rng: np.random.Generator, center_y: float | None = None,
           scale: float = 1.0) -> _Instance:
    """A tight group of 3-6 small same-class objects labelled as one crowd segment."""
    label = int(rng.integers(len(preset.things)))
    size = MIN_OBJECT_FRACTION * scale * min(h, w)
    cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    if center_y is not None:
        cy = center_y
    parts = []
    for _ in range(int(rng.integers(3, 7))):
        oh = int(size * rng.uniform(0.8, 1.3))
        ow = int(size * rng.uniform(0.8, 1.3))
        parts.append((int(cy + rng.normal(0, size * 0.8)), int(cx + rng.normal(0, size)), oh, ow))
    return _Instance(label, parts, _jitter(preset.things[label].color, rng), iscrowd=True)


def _jitter(color: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.asarray(color, dtype=np.float32) + rng.uniform(-20, 20, 3), 0, 255)


def _paint(preset: Preset, instances: list[_Instance], h: int, w: int
           ) -> tuple[np.ndarray, list[int]]:
    """Instance index map (-1 = none, later instances on top) and each instance's full (unoccluded) area."""
    owner = np.full((h, w), -1, dtype=np.int64)
    full_area = []
    for k, inst in enumerate(instances):
        area = 0
        for y, x, oh, ow in inst.boxes:
            mask = _shape_mask(preset.things[inst.label].shape, oh, ow)
            y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + oh, h), min(x + ow, w)
            if y1 <= y0 or x1 <= x0:
                continue
            part = mask[y0 - y:y1 - y, x0 - x:x1 - x]
            owner[y0:y1, x0:x1][part] = k
            area += int(mask.sum())
        full_area.append(area)
    return owner, full_area


# ------------------------------------------------------------------------------------------ one image


def render_image(preset: Preset, size: tuple[int, int], rng: np.random.Generator, no_things: bool = False,
                 object_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One synthetic image: (H, W, 3) uint8 RGB, (H, W) int64 segment ids, segments [{id, category_id, iscrowd}].

    ``object_scale`` multiplies every thing's size (1.0: the presets' sizes)."""
    h, w = size
    if preset.layout == "regions":
        stuff = _regions_layout(preset, h, w, rng)
        instances = [] if no_things else _regions_things(preset, h, w, rng, object_scale)
        crowd_y = None
    else:
        stuff, horizon = _street_layout(preset, h, w, rng)
        instances = [] if no_things else _street_things(preset, h, w, horizon, rng, object_scale)
        crowd_y = horizon + 0.1 * (h - horizon)  # a far-away group on the ground
    if not no_things and rng.random() < P_CROWD:
        instances.insert(0, _crowd(preset, h, w, rng, crowd_y, object_scale))  # behind the other instances

    # Remove instances hidden too much by later ones (off-image parts count as hidden), then repaint.
    owner, full_area = _paint(preset, instances, h, w)
    visible = np.bincount(owner[owner >= 0], minlength=len(instances))
    min_area = (MIN_OBJECT_FRACTION * object_scale * min(h, w)) ** 2 / 2
    instances = [inst for k, inst in enumerate(instances)
                 if visible[k] >= max(MIN_VISIBLE * full_area[k], min_area)]
    owner, _ = _paint(preset, instances, h, w)

    image = np.zeros((h, w, 3), dtype=np.float32)
    ids = np.zeros((h, w), dtype=np.int64)
    num_things = len(preset.things)
    for s in np.unique(stuff[stuff >= 0]).tolist():
        region = stuff == s
        image[region] = _texture(preset.stuff[s].texture, preset.stuff[s].color, h, w, rng)[region]
        ids[region] = (num_things + s + 1) * 1000
    void = stuff < 0
    image[void] = rng.uniform(60, 140, (int(void.sum()), 1))  # unlabeled clutter
    shade = (1.1 - 0.25 * np.arange(h, dtype=np.float32) / h)[:, None, None]  # light from above
    counters = [0] * num_things
    for k, inst in enumerate(instances):
        region = owner == k
        counters[inst.label] += 1
        ids[region] = (inst.label + 1) * 1000 + counters[inst.label]
        image[region] = (inst.color[None, None, :] * shade * np.ones((1, w, 1), np.float32))[region]
    image += rng.normal(0.0, NOISE_SIGMA, image.shape).astype(np.float32)
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)

    present = set(np.unique(ids).tolist())
    segments = [{"id": (num_things + s + 1) * 1000, "category_id": num_things + s + 1, "iscrowd": 0}
                for s in sorted(set(np.unique(stuff[stuff >= 0]).tolist()))]
    counters = [0] * num_things
    for inst in instances:
        counters[inst.label] += 1
        segments.append({"id": (inst.label + 1) * 1000 + counters[inst.label], "category_id": inst.label + 1,
                         "iscrowd": int(inst.iscrowd)})
    segments = [seg for seg in segments if seg["id"] in present]  # stuff fully covered by things
    return image, ids, segments


# ------------------------------------------------------------------------------------------ data sets


def split_paths(out_dir: str | os.PathLike, split: str) -> SplitPaths:
    """Where :func:`generate_synthetic` writes ``split``."""
    out = Path(out_dir)
    return SplitPaths(json_path=out / "annotations" / f"panoptic_{split}.json",
                      png_dir=out / "annotations" / f"panoptic_{split}",
                      image_dir=out / "images" / split)


def generate_synthetic(
    out_dir: str | os.PathLike,
    preset: str = "shapes-coco",
    num_train: int = 200,
    num_val: int = 50,
    num_test: int = 50,
    seed: int = 0,
    size: tuple[int, int] | None = None,
    object_scale: float = 1.0,
) -> dict[str, SplitPaths]:
    """Write train / val / test-dev splits in COCO-panoptic format (test-dev keeps its ground truth).

    Layout: ``out_dir/images/<split>/<name>.png``, ``out_dir/annotations/panoptic_<split>.json`` and
    ``out_dir/annotations/panoptic_<split>/<name>.png``. Deterministic for given arguments. A count of 0
    writes that split without images (tests that need one split only; the CLI asks for at least one).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    size = tuple(size) if size is not None else spec.size
    if not 0.25 <= object_scale <= 4:
        raise ValueError(f"object_scale must lie in [0.25, 4], got {object_scale}")
    if len(size) != 2 or not all(MIN_SIZE <= side <= MAX_SIZE for side in size):
        raise ValueError(f"size must be (H, W) with both sides in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    counts = {"train": num_train, "val": num_val, "test-dev": num_test}
    for split, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"number of {split} images must be an integer >= 0, got {count!r}")
    result: dict[str, SplitPaths] = {}
    for split_index, split in enumerate(SPLITS):
        paths = split_paths(out_dir, split)
        paths.image_dir.mkdir(parents=True, exist_ok=True)
        with PanopticWriter(paths.png_dir, paths.json_path, spec.categories()) as writer:
            for i in tqdm(range(counts[split]), desc=f"{preset} {split}", unit="img", disable=None):
                rng = np.random.default_rng([seed, split_index, i])
                no_things = i % 12 == 11 or rng.random() < P_NO_THINGS / 2
                image, ids, segments = render_image(spec, size, rng, no_things=no_things, object_scale=object_scale)
                name = f"{i + 1:06d}.png"
                atomic_save_image(paths.image_dir / name, Image.fromarray(image))
                info = {"id": split_index * 1_000_000 + i + 1, "file_name": name, "height": size[0],
                        "width": size[1]}
                writer.add(info, ids, segments)
        result[split] = paths
    return result


def write_preview(path: str | os.PathLike, preset: str = "shapes-coco", seed: int = 0, index: int = 0,
                  scale: int = 3) -> None:
    """Save one training image of ``preset`` next to its panoptic colouring (for the README)."""
    from spatialflow.data.visualize import panoptic_colors, save_side_by_side

    spec = PRESETS[preset]
    image, ids, segments = render_image(spec, spec.size, np.random.default_rng([seed, 0, index]))
    save_side_by_side(path, [image, panoptic_colors(ids, segments, spec.categories())], scale=scale)
