"""validate_panoptic / `spatialflow validate-data` and the reader's errors: one named line per problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.paths import FIXTURES
from spatialflow.cli import main
from spatialflow.data.coco_panoptic import CocoPanoptic, PanopticWriter
from spatialflow.data.validate import validate_panoptic
from spatialflow.errors import DataError

FIXTURE = FIXTURES / "coco_panoptic_sample"
CATEGORIES = [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]
IDS = np.array([[0, 5, 5, 9], [9, 5, 5, 9], [9, 9, 9, 9]])  # 5: thing, area 4, bbox [1,0,2,2]; 9: stuff


def make_set(root: Path) -> tuple[Path, Path, Path]:
    """Two valid 3x4 images a.png / b.png with their panoptic PNGs."""
    images = root / "images"
    images.mkdir()
    with PanopticWriter(root / "pan", root / "pan.json", CATEGORIES) as writer:
        for image_id, name in ((1, "a.png"), (2, "b.png")):
            Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(images / name)
            writer.add({"id": image_id, "file_name": name, "height": 3, "width": 4}, IDS,
                       [{"id": 5, "category_id": 1}, {"id": 9, "category_id": 2}])
    return root / "pan.json", root / "pan", images


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def check(tmp_path: Path, expected: list[str], reader_error: str | None = None) -> None:
    """Validator reports exactly ``expected`` substrings (one line each); the reader raises the first."""
    json_path, png_dir, image_dir = tmp_path / "pan.json", tmp_path / "pan", tmp_path / "images"
    problems = validate_panoptic(json_path, png_dir, image_dir)
    assert len(problems) == len(expected), problems
    for line, text in zip(problems, expected):
        assert text in line and "\n" not in line, (line, text)
    assert main(["validate-data", "--json", str(json_path), "--png-dir", str(png_dir),
                 "--image-dir", str(image_dir)]) == 1
    if reader_error is not None:
        with pytest.raises(DataError, match=reader_error):
            reader = CocoPanoptic(json_path, png_dir, image_dir)
            for i in range(len(reader)):
                reader[i]


def test_valid_set_passes(tmp_path, capsys):
    json_path, png_dir, image_dir = make_set(tmp_path)
    assert validate_panoptic(json_path, png_dir, image_dir) == []
    assert main(["validate-data", "--json", str(json_path), "--png-dir", str(png_dir),
                 "--image-dir", str(image_dir)]) == 0
    assert "OK" in capsys.readouterr().out


def test_real_coco_fixture_is_valid():
    assert validate_panoptic(FIXTURE / "panoptic_val2017_sample.json", FIXTURE / "panoptic", FIXTURE / "images") == []


def test_json_that_does_not_parse(tmp_path):
    make_set(tmp_path)
    (tmp_path / "pan.json").write_text('{"images": [')
    check(tmp_path, ["pan.json: not valid JSON"], "not valid JSON")


def test_json_lacking_keys(tmp_path):
    make_set(tmp_path)

    def drop(data):
        del data["annotations"][1]["segments_info"][0]["area"]
        del data["images"][0]["height"]
    edit_json(tmp_path / "pan.json", drop)
    # One line per file: the first problem, counting the others.
    check(tmp_path, ["pan.json: images[0] lacks key(s) height (and 1 more problem in this file)"], "lacks key")


def test_json_lacking_top_level_key(tmp_path):
    make_set(tmp_path)
    edit_json(tmp_path / "pan.json", lambda d: d.pop("categories"))
    check(tmp_path, ["pan.json: missing top-level key 'categories'"], "missing top-level key")


def test_missing_png(tmp_path):
    make_set(tmp_path)
    (tmp_path / "pan" / "b.png").unlink()
    check(tmp_path, ["b.png: panoptic PNG not found"], r"b\.png: panoptic PNG not found")


def test_truncated_png(tmp_path):
    make_set(tmp_path)
    png = tmp_path / "pan" / "a.png"
    png.write_bytes(png.read_bytes()[:40])
    check(tmp_path, ["a.png: cannot read PNG"], r"a\.png: cannot read PNG")


def test_corrupt_png(tmp_path):
    make_set(tmp_path)
    (tmp_path / "pan" / "a.png").write_bytes(b"this is not a PNG at all")
    check(tmp_path, ["a.png: cannot read PNG"], "cannot read PNG")


def test_png_size_differs_from_image_size(tmp_path):
    make_set(tmp_path)
    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "pan" / "a.png")
    check(tmp_path, ["a.png: PNG is 3x5 (HxW), the JSON says 3x4"], "PNG is 3x5")


def test_image_size_differs_from_json(tmp_path):
    make_set(tmp_path)
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "images" / "b.png")
    check(tmp_path, ["images/b.png: image is 2x4 (HxW), the JSON says 3x4"], "image is 2x4")


def test_missing_image(tmp_path):
    make_set(tmp_path)
    (tmp_path / "images" / "a.png").unlink()
    check(tmp_path, ["images/a.png: image not found"], "image not found")


def test_segment_in_png_but_not_in_segments_info(tmp_path):
    make_set(tmp_path)
    edit_json(tmp_path / "pan.json", lambda d: d["annotations"][0]["segments_info"].pop(0))
    check(tmp_path, ["a.png: segment id 5 is in the PNG but not in segments_info"], "segment id 5 is in the PNG")


def test_segment_in_segments_info_but_not_in_png(tmp_path):
    make_set(tmp_path)
    extra = {"id": 77, "category_id": 1, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}
    edit_json(tmp_path / "pan.json", lambda d: d["annotations"][1]["segments_info"].append(extra))
    check(tmp_path, ["b.png: segment 77 is in segments_info but not in the PNG"], "segment 77")


def test_unknown_category(tmp_path):
    make_set(tmp_path)

    def change(data):
        data["annotations"][0]["segments_info"][1]["category_id"] = 42
    edit_json(tmp_path / "pan.json", change)
    check(tmp_path, ["a.png: segment 9 has unknown category_id 42"], "unknown category_id 42")


def test_duplicate_segment_ids(tmp_path):
    make_set(tmp_path)

    def change(data):
        segs = data["annotations"][0]["segments_info"]
        segs.append(dict(segs[0]))
    edit_json(tmp_path / "pan.json", change)
    check(tmp_path, ["a.png: duplicate segment id 5"], "duplicate segment id 5")


def test_area_and_bbox_inconsistent_with_png(tmp_path):
    make_set(tmp_path)

    def change(data):
        data["annotations"][1]["segments_info"][0]["area"] = 5  # true area 4
        data["annotations"][1]["segments_info"][0]["bbox"] = [1, 0, 3, 2]  # true bbox [1, 0, 2, 2]
    edit_json(tmp_path / "pan.json", change)
    check(tmp_path, ["b.png: segment 5: area 5 in JSON, 4 in PNG (and 1 more problem in this file)"],
          "area 5 in JSON")


def test_duplicate_image_ids_and_unannotated_image(tmp_path):
    make_set(tmp_path)

    def change(data):
        data["images"].append({"id": 3, "file_name": "c.png", "height": 3, "width": 4})
    edit_json(tmp_path / "pan.json", change)
    check(tmp_path, ["pan.json: image 3 (c.png) has no annotation"], "has no annotation")


def test_cli_prints_one_line_per_problem(tmp_path, capsys):
    make_set(tmp_path)
    (tmp_path / "pan" / "a.png").unlink()
    (tmp_path / "pan" / "b.png").unlink()
    code = main(["validate-data", "--json", str(tmp_path / "pan.json"), "--png-dir", str(tmp_path / "pan")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[0].endswith("a.png: panoptic PNG not found") and err[1].endswith("b.png: panoptic PNG not found")
    assert err[2] == f"2 problem(s) in {tmp_path / 'pan.json'}"
