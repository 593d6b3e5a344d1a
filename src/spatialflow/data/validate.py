"""Check a COCO-panoptic data set: JSON structure, PNGs, images and their agreement.

At most one line per file (its first problem, with the count of the others), each starting with the file.
The checks are the ones evaluate and package-submission apply (``coco_panoptic.check_panoptic_json`` for the
JSON, ``data.panoptic_ids.read_segment_ids`` for the PNGs), so the three commands accept and reject the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from spatialflow.data.coco_panoptic import (
    check_panoptic_json,
    image_size_problem,
    one_line_per_file,
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
    """All problems found in a COCO-panoptic set, at most one line per file (empty list = valid)."""
    try:
        data = read_json(json_path)
    except DataError as exc:
        return [str(exc)]
    problems, index = check_panoptic_json(data, json_path, "dataset", nonempty=True)
    for ann in tqdm(index.annotations, desc="validate", unit="img", disable=None):
        png_path = Path(png_dir) / ann["file_name"]
        info = index.images.get(ann["image_id"])
        try:
            panoptic_ids = read_panoptic_png(png_path, info)  # the header's size is checked before decoding
        except DataError as exc:
            problems.append(exc)
            continue
        if info is not None and image_dir is not None:
            try:
                mismatch = image_size_problem(Path(image_dir) / info["file_name"], info)
            except DataError as exc:
                mismatch = exc
            if mismatch is not None:
                problems.append(mismatch)
        problems.extend(segment_problems(panoptic_ids, ann["segments_info"], index.category_ids, png_path))
    return [str(p) for p in one_line_per_file(problems)]
