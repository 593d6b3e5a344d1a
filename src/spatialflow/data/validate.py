"""Check a COCO-panoptic data set: JSON structure, PNGs, images and their agreement.

Every problem is reported as one line that starts with the offending file.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from spatialflow.data.coco_panoptic import (
    REQUIRED_TOP_KEYS,
    image_size,
    json_structure_problems,
    read_json,
    read_panoptic_png,
    segment_problems,
)
from spatialflow.errors import DataError


def validate_panoptic(
    json_path: str | os.PathLike,
    png_dir: str | os.PathLike,
    image_dir: str | os.PathLike | None = None,
) -> list[str]:
    """All problems found in a COCO-panoptic set, one line each (empty list = valid)."""
    try:
        data = read_json(json_path)
    except DataError as exc:
        return [str(exc)]
    problems = [str(p) for p in json_structure_problems(data, json_path)]
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in REQUIRED_TOP_KEYS):
        return problems  # nothing further can be checked

    category_ids = {c["id"] for c in data["categories"] if isinstance(c, dict) and "id" in c}
    images = {img["id"]: img for img in data["images"] if isinstance(img, dict) and "id" in img}
    annotations = [
        ann for ann in data["annotations"]
        if isinstance(ann, dict) and all(k in ann for k in ("image_id", "file_name", "segments_info"))
        and isinstance(ann["segments_info"], list)
    ]
    for ann in tqdm(annotations, desc="validate", unit="img", disable=None):
        segments = [s for s in ann["segments_info"] if isinstance(s, dict) and "id" in s and "category_id" in s]
        png_path = Path(png_dir) / ann["file_name"]
        try:
            panoptic_ids = read_panoptic_png(png_path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        info = images.get(ann["image_id"])
        if info is not None and all(k in info for k in ("height", "width", "file_name")):
            expected = (info["height"], info["width"])
            if panoptic_ids.shape != expected:
                problems.append(str(DataError(
                    png_path, f"PNG is {panoptic_ids.shape[0]}x{panoptic_ids.shape[1]} (HxW), the JSON says "
                              f"{expected[0]}x{expected[1]} for image {ann['image_id']!r}")))
                continue
            if image_dir is not None:
                image_path = Path(image_dir) / info["file_name"]
                try:
                    size = image_size(image_path)
                    if size != expected:
                        problems.append(str(DataError(
                            image_path, f"image is {size[0]}x{size[1]} (HxW), the JSON says "
                                        f"{expected[0]}x{expected[1]}")))
                except DataError as exc:
                    problems.append(str(exc))
        problems.extend(str(p) for p in segment_problems(panoptic_ids, segments, category_ids, png_path))
    return problems
