"""Cityscapes -> COCO-panoptic through cityscapesscripts, on a tiny fabricated Cityscapes folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spatialflow.cli import main
from spatialflow.data.cityscapes import convert_cityscapes
from spatialflow.data.coco_panoptic import CocoPanoptic
from spatialflow.data.validate import validate_panoptic
from spatialflow.errors import DataError


def fabricate(root: Path) -> None:
    """Two 64 x 128 val frames of city 'aachen' in the official layout.

    instanceIds: road (label 7) bottom half, sky (23) top half, car 26001 and 26002 (2 instances),
    a person crowd region 24 (id < 1000 = crowd), 16 unlabeled pixels (0, ignored -> void).
    """
    for frame in ("000000_000019", "000001_000019"):
        ids = np.full((64, 128), 23, dtype=np.uint16)
        ids[32:] = 7
        ids[40:50, 10:40] = 26001  # 300 px
        ids[40:52, 60:80] = 26002  # 240 px
        ids[20:30, 100:110] = 24  # crowd, 100 px
        ids[0:4, 0:4] = 0  # unlabeled
        gt = root / "gtFine" / "val" / "aachen"
        gt.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids).save(gt / f"aachen_{frame}_gtFine_instanceIds.png")
        img = root / "leftImg8bit" / "val" / "aachen"
        img.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((64, 128, 3), 100, np.uint8)).save(img / f"aachen_{frame}_leftImg8bit.png")


def test_convert_and_read(tmp_path):
    fabricate(tmp_path / "cs")
    paths = convert_cityscapes(tmp_path / "cs", tmp_path / "out", splits=("val",))["val"]
    assert paths.json_path == tmp_path / "out" / "annotations" / "panoptic_val.json"
    assert paths.image_dir == tmp_path / "cs" / "leftImg8bit" / "val"
    assert validate_panoptic(paths.json_path, paths.png_dir, paths.image_dir) == []
    reader = CocoPanoptic(paths.json_path, paths.png_dir, paths.image_dir)
    # 19 evaluated Cityscapes classes: 8 things, 11 stuff
    assert len(reader) == 2 and reader.categories.num_things == 8 and reader.categories.num_stuff == 11
    sample = reader[0]
    assert sample.image_id == "aachen_000000_000019" and sample.image.shape == (64, 128, 3)
    # things: person crowd (label 24 -> thing 0) then cars (label 26 -> thing 2), in id order 24, 26001, 26002
    assert sample.labels.tolist() == [0, 2, 2] and sample.iscrowd.tolist() == [True, False, False]
    assert [int(m.sum()) for m in sample.masks] == [100, 300, 240]
    assert sample.boxes[1].tolist() == [10, 40, 40, 50]
    # stuff indices: road (7) -> 0, sky (23) -> 10; other = 11; unlabeled -> 255
    assert sample.stuff_map[0, 0] == 255 and sample.stuff_map[10, 10] == 10
    assert sample.stuff_map[60, 5] == 0 and sample.stuff_map[45, 20] == 11
    assert int((sample.stuff_map == 255).sum()) == 16


def test_cli_and_missing_root(tmp_path, capsys):
    fabricate(tmp_path / "cs")
    assert main(["convert-cityscapes", "--root", str(tmp_path / "cs"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "annotations" / "panoptic_val" / "aachen_000000_000019_gtFine_panoptic.png").exists()
    with pytest.raises(DataError, match="gtFine/train: no <city>"):
        convert_cityscapes(tmp_path / "cs", tmp_path / "o", splits=("train",))
    assert main(["convert-cityscapes", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no <city>/*_gtFine_instanceIds.png" in capsys.readouterr().err
