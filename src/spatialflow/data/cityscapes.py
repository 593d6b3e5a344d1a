"""Cityscapes -> COCO-panoptic, through the official ``cityscapesscripts`` converter.

Input: the official layout ``root/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
``root/gtFine/<split>/<city>/*_gtFine_instanceIds.png``. Output, like the synthetic sets:
``out/annotations/panoptic_<split>.json`` + ``out/annotations/panoptic_<split>/*.png``. Category ids are
Cityscapes label ids (19 evaluated classes: 8 things, 11 stuff); image ids are the official
``<city>_<seq>_<frame>`` strings. Image ``file_name``s are rewritten to ``<city>/<id>_leftImg8bit.png`` (the
converter writes a name that does not exist) so that images are read in place from ``root/leftImg8bit/<split>``
(nothing is copied).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

from spatialflow.data.coco_panoptic import SplitPaths, read_json
from spatialflow.errors import DataError
from spatialflow.utils.atomic import atomic_write_json


def convert_cityscapes(
    root: str | os.PathLike, out_dir: str | os.PathLike, splits: tuple[str, ...] | list[str] = ("val",)
) -> dict[str, SplitPaths]:
    """Convert the given splits; each split's files appear only once complete."""
    root, out_dir = Path(root), Path(out_dir)
    annotations = out_dir / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    result: dict[str, SplitPaths] = {}
    for split in splits:
        gt_dir = root / "gtFine" / split
        if not any(gt_dir.glob("*/*_gtFine_instanceIds.png")):
            raise DataError(gt_dir, "no <city>/*_gtFine_instanceIds.png files (is this the Cityscapes root?)")
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise DataError(image_dir, "folder not found (the Cityscapes images)")
        with tempfile.TemporaryDirectory(dir=annotations, prefix=f".{split}.") as tmp:
            with contextlib.redirect_stdout(io.StringIO()):  # the converter prints per-file progress
                try:
                    convert2panoptic(str(root / "gtFine"), tmp, useTrainId=False, setNames=[split])
                except SystemExit:  # cityscapesscripts' printError exits
                    raise DataError(gt_dir, "cityscapesscripts could not convert this split") from None
            data = read_json(Path(tmp) / f"cityscapes_panoptic_{split}.json")
            for image in data["images"]:  # the converter names it '<id>_gtFine_leftImg8bit.png' (wrong)
                city = str(image["id"]).split("_")[0]
                image["file_name"] = f"{city}/{image['id']}_leftImg8bit.png"
            paths = SplitPaths(json_path=annotations / f"panoptic_{split}.json",
                               png_dir=annotations / f"panoptic_{split}", image_dir=image_dir)
            if paths.png_dir.exists():
                shutil.rmtree(paths.png_dir)
            os.replace(Path(tmp) / f"cityscapes_panoptic_{split}", paths.png_dir)
            atomic_write_json(paths.json_path, data, indent=None)
        result[split] = paths
    return result
