"""The COCO panoptic test-dev upload: one zip holding the results JSON and the folder of PNGs.

Layout the evaluation server expects (COCO upload naming, ``<method>`` without underscores)::

    panoptic_test-dev2017_<method>_results.zip
    ├── panoptic_test-dev2017_<method>_results.json
    └── panoptic_test-dev2017_<method>_results/
        └── <file_name of each annotation>.png

The JSON is also written beside the zip. Before anything is written, every annotation is checked: its PNG
exists, is RGB, and holds exactly the segment ids of its ``segments_info``, with known category ids and no
duplicates; with ``image_info_json`` (COCO's ``image_info_test-dev2017.json``) every image must have exactly
one annotation.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spatialflow.data.coco_panoptic import (
    check_panoptic_json,
    load_panoptic_json,
    raise_first,
    read_json,
    size_check_of,
)
from spatialflow.errors import ConfigError, DataError
from spatialflow.data.panoptic_ids import read_segment_ids
from spatialflow.utils.atomic import atomic_open, atomic_write_json

#: A field of the upload's file names (the method, the split): letters, digits and '-', starting with a
#: letter or digit. No '_' (it separates the fields), no '.', '/', '\\' or control characters, so the
#: names stay inside the output folder and the zip.
_NAME_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")


def name_field_problem(value: str) -> str | None:
    """Why ``value`` cannot be the method or split in the upload's file names (None if it can)."""
    if _NAME_FIELD.fullmatch(value):
        return None
    return (f"{value!r} is not a name for the upload's files; use 1 to 100 letters, digits and '-', starting "
            "with a letter or digit (no '_', which separates the fields, no '.', '/' or control characters)")


def submission_name(method: str, split: str = "test-dev2017") -> str:
    """``panoptic_<split>_<method>_results`` (the stem of the JSON, the folder and the zip)."""
    for field, value in (("method", method), ("split", split)):
        problem = name_field_problem(value)
        if problem:
            raise ConfigError(f"{field} {problem}")
    return f"panoptic_{split}_{method}_results"


def _image_ids(image_info_json: str | os.PathLike) -> set:
    """The image ids of COCO's image list (``image_info_test-dev2017.json``: images, no annotations)."""
    info = read_json(image_info_json)
    images = info.get("images") if isinstance(info, dict) else None
    image_ids = {image["id"] for image in images if isinstance(image, dict)
                 and isinstance(image.get("id"), (int, str))} if isinstance(images, list) else set()
    if not image_ids:
        raise DataError(image_info_json, "no 'images' list with ids")
    return image_ids


def check_prediction(pred: dict, pred_json: str | os.PathLike, pred_dir: str | os.PathLike,
                     image_ids: set | None = None) -> None:
    """Raise DataError (naming the file) for the first problem that would make the server reject ``pred``.

    The JSON and PNG checks are those of validate-data and evaluate (``check_panoptic_json``,
    ``read_segment_ids``): duplicate, absolute and '..' file names, file names with control characters and
    missing keys are refused here.
    """
    problems, index = check_panoptic_json(pred, pred_json, "submission", nonempty=True)
    raise_first(problems)
    if not index.category_ids:
        raise DataError(pred_json, "no 'categories' list (copy it from the panoptic val2017 JSON)")
    annotations = pred["annotations"]
    seen: set = set()
    for annotation in tqdm(annotations, desc="check", unit="img", disable=None):
        image_id = annotation["image_id"]
        seen.add(image_id)
        if image_ids is not None and image_id not in image_ids:
            raise DataError(pred_json, f"annotation for image {image_id}, which is not in the image list")
        png = Path(pred_dir) / annotation["file_name"]
        ids = [s["id"] for s in annotation["segments_info"]]
        if len(set(ids)) != len(ids):
            raise DataError(pred_json, f"image {image_id}: duplicate segment ids")
        unknown = sorted({s["category_id"] for s in annotation["segments_info"]} - index.category_ids)
        if unknown:
            raise DataError(pred_json, f"image {image_id}: unknown category ids {unknown}")
        info = index.images.get(image_id)  # a prediction JSON may list its images: sizes must agree
        segment_ids = read_segment_ids(png, size_check_of(info))
        in_png = set(np.unique(segment_ids).tolist()) - {0}
        if in_png != set(ids) - {0}:
            raise DataError(png, f"PNG segment ids {sorted(in_png - set(ids))[:5]} not in the JSON, "
                                 f"JSON ids {sorted(set(ids) - in_png)[:5]} not in the PNG")
    if image_ids is not None and len(seen) != len(image_ids):
        missing = sorted(image_ids - seen, key=str)
        raise DataError(pred_json, f"no annotation for {len(missing)} images, e.g. {missing[:5]}")


def verify_zip(zip_path: str | os.PathLike, name: str, annotations: list[dict]) -> None:
    """The written zip holds the results JSON and exactly one entry per annotation, all under ``name/``."""
    expected = {f"{name}.json"} | {f"{name}/{a['file_name']}" for a in annotations}
    try:
        with zipfile.ZipFile(zip_path) as archive:
            entries = archive.namelist()
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(zip_path, f"written zip cannot be read back ({exc})") from None
    if damaged is not None:
        raise DataError(zip_path, f"written zip entry {damaged} fails its CRC check")
    outside = [e for e in entries if e != f"{name}.json" and not e.startswith(f"{name}/")]
    if outside or len(entries) != len(set(entries)) or set(entries) != expected:
        raise DataError(zip_path, f"written zip has {len(entries)} entries ({outside[:3]} outside {name}/); "
                                  f"expected {len(expected)}: the JSON and one PNG per annotation under {name}/")


def package_submission(pred_json: str | os.PathLike, pred_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       method: str, *, split: str = "test-dev2017",
                       image_info_json: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Check the prediction and write ``(results JSON, upload zip)`` into ``out_dir`` (atomically)."""
    name = submission_name(method, split)
    pred = load_panoptic_json(pred_json, "submission", nonempty=True)
    image_ids = None if image_info_json is None else _image_ids(image_info_json)
    check_prediction(pred, pred_json, pred_dir, image_ids)

    out = Path(out_dir)
    json_path = out / f"{name}.json"
    zip_path = out / f"{name}.zip"
    for path in (json_path, zip_path):  # a second guard behind the checked name fields
        if path.resolve().parent != out.resolve():
            raise ConfigError(f"{path}: would be written outside the output folder {out}")
    atomic_write_json(json_path, pred, indent=None)
    with atomic_open(zip_path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            # PNGs are already deflated: storing them is as small and much faster.
            archive.write(json_path, f"{name}.json", compress_type=zipfile.ZIP_DEFLATED)
            for annotation in tqdm(pred["annotations"], desc="zip", unit="png", disable=None):
                archive.write(Path(pred_dir) / annotation["file_name"], f"{name}/{annotation['file_name']}")
        handle.flush()
        verify_zip(handle.name, name, pred["annotations"])  # the temp file: a bad zip is never renamed into place
    return json_path, zip_path
