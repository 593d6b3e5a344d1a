"""COCO-panoptic reader and writer: the real COCO fixture and small hand-made sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.paths import FIXTURES
from spatialflow.data.coco_panoptic import (
    CocoPanoptic,
    PanopticWriter,
    check_panoptic_json,
    file_name_problem,
    load_panoptic_json,
    read_json,
    segment_stats,
    text_problem,
)
from spatialflow.errors import DataError

FIXTURE = FIXTURES / "coco_panoptic_sample"
FIXTURE_JSON = FIXTURE / "panoptic_val2017_sample.json"

# things 1, 2; stuff 5, 7 -> thing indices 0, 1; stuff indices 0, 1; 'other' = 2
CATEGORIES = [
    {"id": 1, "name": "a", "isthing": 1},
    {"id": 5, "name": "s5", "isthing": 0},
    {"id": 2, "name": "b", "isthing": 1},
    {"id": 7, "name": "s7", "isthing": 0},
]
# 4 x 5 map: 10 = thing 1, 20 = thing 2 (crowd), 50 = stuff 5, 70 = stuff 7, 0 = void
IDS = np.array([
    [50, 50, 10, 10, 0],
    [50, 50, 10, 10, 70],
    [20, 20, 20, 70, 70],
    [0, 0, 20, 70, 70],
])
SEGMENTS = [{"id": 10, "category_id": 1}, {"id": 20, "category_id": 2, "iscrowd": 1},
            {"id": 50, "category_id": 5}, {"id": 70, "category_id": 7}]


def write_small_set(tmp_path: Path) -> tuple[Path, Path]:
    with PanopticWriter(tmp_path / "png", tmp_path / "pan.json", CATEGORIES) as writer:
        writer.add({"id": 3, "file_name": "img3.jpg", "height": 4, "width": 5}, IDS, SEGMENTS)
    return tmp_path / "pan.json", tmp_path / "png"


def test_real_coco_segments_match_json_area_and_bbox():
    reader = CocoPanoptic(FIXTURE_JSON, FIXTURE / "panoptic", FIXTURE / "images")
    data = json.loads(FIXTURE_JSON.read_text())
    assert len(reader) == 2 and reader.categories.num_things == 80 and reader.categories.num_stuff == 53
    checked = 0
    for index in range(len(reader)):
        sample = reader[index]
        ann = next(a for a in data["annotations"] if a["image_id"] == sample.image_id)
        assert sample.image.shape == (sample.height, sample.width, 3) and sample.image.dtype == np.uint8
        stats = segment_stats(sample.panoptic_ids)
        for seg in ann["segments_info"]:  # decoded area/bbox == the official JSON's, for every segment
            assert stats[seg["id"]] == (seg["area"], seg["bbox"])
            checked += 1
        things = [s for s in ann["segments_info"] if reader.categories.is_thing(s["category_id"])]
        assert len(sample.labels) == len(things)
        for k, seg in enumerate(things):
            x, y, w, h = seg["bbox"]
            np.testing.assert_array_equal(sample.boxes[k], [x, y, x + w, y + h])
            assert sample.masks[k].sum() == seg["area"]
            assert sample.labels[k] == reader.categories.contiguous(seg["category_id"])
            assert sample.iscrowd[k] == bool(seg["iscrowd"])
        # 'other' (= 53) covers exactly the thing pixels, crowd included
        assert (sample.stuff_map == 53).sum() == sum(s["area"] for s in things)
        void = (sample.panoptic_ids == 0).sum()
        assert (sample.stuff_map == 255).sum() == void
    assert checked == sum(len(a["segments_info"]) for a in data["annotations"])
    # image 142238 has 14 persons (one crowd) and 1 sports ball (category 37) -> 15 instances
    first = reader[0]
    assert first.image_id == 142238 and len(first.labels) == 15 and first.iscrowd.sum() == 1


def test_writer_fills_area_bbox_and_png_colours(tmp_path):
    json_path, png_dir = write_small_set(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["images"] == [{"id": 3, "file_name": "img3.jpg", "height": 4, "width": 5}]
    ann = data["annotations"][0]
    assert ann["file_name"] == "img3.png" and ann["image_id"] == 3
    # areas/bboxes counted by hand from IDS: 10 -> rows 0-1, cols 2-3; 20 -> (2,0),(2,1),(2,2),(3,2);
    # 50 -> rows 0-1, cols 0-1; 70 -> (1,4),(2,3),(2,4),(3,3),(3,4)
    assert ann["segments_info"] == [
        {"id": 10, "category_id": 1, "area": 4, "bbox": [2, 0, 2, 2], "iscrowd": 0},
        {"id": 20, "category_id": 2, "area": 4, "bbox": [0, 2, 3, 2], "iscrowd": 1},
        {"id": 50, "category_id": 5, "area": 4, "bbox": [0, 0, 2, 2], "iscrowd": 0},
        {"id": 70, "category_id": 7, "area": 5, "bbox": [3, 1, 2, 3], "iscrowd": 0},
    ]
    rgb = np.asarray(Image.open(png_dir / "img3.png"))
    assert rgb.shape == (4, 5, 3)
    assert tuple(rgb[0, 2]) == (10, 0, 0) and tuple(rgb[3, 0]) == (0, 0, 0)
    assert not list(tmp_path.glob("**/*.tmp"))  # atomic writes leave no temporaries


def test_writer_large_ids_use_all_three_channels(tmp_path):
    ids = np.array([[0, 65536 * 2 + 256 * 3 + 4]])  # B = 2, G = 3, R = 4
    with PanopticWriter(tmp_path / "png", tmp_path / "p.json", CATEGORIES) as writer:
        writer.add({"id": 1, "file_name": "a.png", "height": 1, "width": 2}, ids,
                   [{"id": int(ids[0, 1]), "category_id": 5}])
    assert tuple(np.asarray(Image.open(tmp_path / "png" / "a.png"))[0, 1]) == (4, 3, 2)


def test_reader_stuff_map_and_instances(tmp_path):
    json_path, png_dir = write_small_set(tmp_path)
    sample = CocoPanoptic(json_path, png_dir)[0]
    assert sample.image is None and sample.image_id == 3 and sample.file_name == "img3.jpg"
    # stuff 5 -> 0, stuff 7 -> 1, every thing pixel -> other = 2, void -> 255
    expected = np.array([
        [0, 0, 2, 2, 255],
        [0, 0, 2, 2, 1],
        [2, 2, 2, 1, 1],
        [255, 255, 2, 1, 1],
    ])
    np.testing.assert_array_equal(sample.stuff_map, expected)
    np.testing.assert_array_equal(sample.labels, [0, 1])  # category 1 -> 0, category 2 -> 1
    np.testing.assert_array_equal(sample.iscrowd, [False, True])
    np.testing.assert_array_equal(sample.boxes, [[2, 0, 4, 2], [0, 2, 3, 4]])
    np.testing.assert_array_equal(sample.masks[1], IDS == 20)
    assert sample.boxes.dtype == np.float32 and sample.masks.dtype == bool


def test_writer_rejects_bad_segments(tmp_path):
    info = {"id": 1, "file_name": "x.jpg", "height": 4, "width": 5}
    writer = PanopticWriter(tmp_path / "png", tmp_path / "p.json", CATEGORIES)
    with pytest.raises(DataError, match="zero area"):
        writer.add(info, IDS, SEGMENTS + [{"id": 99, "category_id": 1}])
    with pytest.raises(DataError, match=r"\[70\] are in the map but not in segments"):
        writer.add(info, IDS, SEGMENTS[:3])
    with pytest.raises(DataError, match="unknown category_id 3"):
        writer.add(info, IDS, [{"id": 10, "category_id": 3}] + SEGMENTS[1:])
    with pytest.raises(DataError, match="x.png"):
        writer.add({**info, "height": 3}, IDS, SEGMENTS)


def test_writer_context_manager_writes_json_only_on_success(tmp_path):
    with pytest.raises(RuntimeError):
        with PanopticWriter(tmp_path / "png", tmp_path / "p.json", CATEGORIES):
            raise RuntimeError("boom")
    assert not (tmp_path / "p.json").exists()


def test_load_panoptic_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON"):
        load_panoptic_json(bad)
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match="missing top-level key 'categories'"):
        load_panoptic_json(bad)
    with pytest.raises(DataError, match="JSON file not found"):
        load_panoptic_json(tmp_path / "missing.json")


# ------------------------------------------------------------------------- hostile input (one DataError each)


def test_reader_refuses_a_nan_bbox_before_training_reads_it(tmp_path):
    json_path, png_dir = write_small_set(tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"][1]["bbox"][2] = float("nan")  # segment 20: rows 2-3, columns 0-2
    json_path.write_text(json.dumps(data))  # Python writes the non-JSON literal NaN, and reads it back as a float
    with pytest.raises(DataError, match=r"pan\.json: image 3 segments_info\[1\]\.bbox is \[0, 2, NaN, 2\] \(a list\); "
                                        r"expected \[x, y, width, height\], finite numbers >= 0$"):
        CocoPanoptic(json_path, png_dir)


def test_reader_checks_png_and_image_sizes_from_their_headers(tmp_path):
    from helpers.png import png_header_only

    json_path, png_dir = write_small_set(tmp_path)
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image_dir / "img3.jpg")
    with pytest.raises(DataError, match=r"img3\.jpg: image is 40x50 \(HxW\), the JSON says 4x5$"):
        CocoPanoptic(json_path, png_dir, image_dir)[0]
    png_header_only(png_dir / "img3.png", 4000, 5000)  # undecodable pixels: only the header can be read
    with pytest.raises(DataError, match=r"img3\.png: PNG is 4000x5000 \(HxW\), the JSON says 4x5 for image 3$"):
        CocoPanoptic(json_path, png_dir)[0]


def test_read_json_refuses_deep_nesting_bytes_that_are_not_utf8_and_huge_integers(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"x\.json: nested too deeply to parse"):
        read_json(path)
    path.write_bytes(b'{"name": "M\xfcnchen"}')  # Latin-1
    with pytest.raises(DataError, match=r"x\.json: not UTF-8 text \(byte 0xfc at offset 11\); expected a UTF-8 JSON"):
        read_json(path)
    path.write_text("[" + "9" * 5000 + "]")
    with pytest.raises(DataError, match=r"x\.json: not valid JSON \(Exceeds the limit"):
        read_json(path)
    path.write_text('{"name": "M\\u00fcnchen"}')  # escaped non-ASCII text is fine
    assert read_json(path) == {"name": "München"}


def test_names_with_control_characters_or_lone_surrogates_are_problems():
    assert text_problem("München/a b.png") is None
    assert text_problem("a\x00b") == "contains the control character '\\x00'"
    assert text_problem("a\nb") == "contains the control character '\\n'"
    assert text_problem("a\x7f") == "contains the control character '\\x7f'"
    assert text_problem("\udcff") == "contains '\\udcff', which is not UTF-8 text (a lone surrogate)"
    assert file_name_problem("a\tb.png") == "contains the control character '\\t'"
    assert file_name_problem("../a.png", "image folder") == "contains '..'; expected a name inside the image folder"
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 5}],
            "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": []}],
            "categories": [{"id": 1, "name": "pe\x00rson", "isthing": 1}, {"id": 2, "name": "\udcff", "isthing": 0}]}
    problems, _ = check_panoptic_json(data, "p.json", "gt")
    assert [str(p) for p in problems] == [
        'p.json: categories[0].name is "pe\\u0000rson" (a string); expected UTF-8 text without control characters',
        'p.json: categories[1].name is "\\udcff" (a string); expected UTF-8 text without control characters',
    ]
