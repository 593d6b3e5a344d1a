"""Synthetic panoptic generator: exact COCO-panoptic format, deterministic, with the promised content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spatialflow.cli import main
from spatialflow.data.coco_panoptic import CocoPanoptic
from spatialflow.data.synthetic import PRESETS, generate_synthetic, write_preview
from spatialflow.data.validate import validate_panoptic


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(tmp_path):
    args = dict(preset="shapes-coco", num_train=4, num_val=2, num_test=2, seed=3, size=(64, 64))
    generate_synthetic(tmp_path / "a", **args)
    generate_synthetic(tmp_path / "b", **args)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    # 3 splits: 8 images + 8 panoptic PNGs + 3 JSONs
    assert len(a) == 8 + 8 + 3 and a == b
    generate_synthetic(tmp_path / "c", **{**args, "seed": 4})
    assert files_of(tmp_path / "c") != a


def test_layout_and_categories(tmp_path):
    paths = generate_synthetic(tmp_path, "shapes-coco", num_train=3, num_val=1, num_test=2, size=(64, 64))
    assert set(paths) == {"train", "val", "test-dev"}
    assert paths["val"].json_path == tmp_path / "annotations" / "panoptic_val.json"
    assert paths["val"].png_dir == tmp_path / "annotations" / "panoptic_val"
    assert paths["test-dev"].image_dir == tmp_path / "images" / "test-dev"
    assert sorted(p.name for p in paths["train"].image_dir.iterdir()) == ["000001.png", "000002.png", "000003.png"]
    data = json.loads(paths["test-dev"].json_path.read_text())
    assert len(data["images"]) == len(data["annotations"]) == 2
    cats = data["categories"]
    # 8 things with ids 1..8 first, then 6 stuff with ids 9..14
    assert [c["id"] for c in cats] == list(range(1, 15))
    assert [c["isthing"] for c in cats] == [1] * 8 + [0] * 6
    city = PRESETS["shapes-cityscapes"].categories()
    assert [c["name"] for c in city if c["isthing"]] == ["person", "car", "truck"]
    assert {"road", "building", "sky", "vegetation"} <= {c["name"] for c in city if not c["isthing"]}


def test_content_is_varied_and_learnable(tmp_path):
    # 24 images at 128 px: image 12 and 24 (index 11, 23) have no things by construction
    paths = generate_synthetic(tmp_path, "shapes-coco", num_train=24, num_val=0, num_test=0, seed=0)
    reader = CocoPanoptic(paths["train"].json_path, paths["train"].png_dir, paths["train"].image_dir)
    samples = [reader[i] for i in range(len(reader))]
    assert all(s.image.shape == (128, 128, 3) for s in samples)
    assert len(samples[11].labels) == 0 and len(samples[23].labels) == 0
    assert sum(int(s.iscrowd.sum()) for s in samples) >= 1  # some crowd regions
    assert sum(int((s.panoptic_ids == 0).sum()) for s in samples) > 0  # some void
    instances = [(s, k) for s in samples for k in range(len(s.labels)) if not s.iscrowd[k]]
    assert len(instances) >= 24  # on average more than one object per image
    # every kept instance shows at least (12 px)^2 / 2 = 72 pixels at 128 px
    assert min(int(s.masks[k].sum()) for s, k in instances) >= 72
    assert len({int(s.labels[k]) for s, k in instances}) >= 6  # most of the 8 classes occur
    # touching / overlapping instances: some pair of boxes intersects or shares an edge
    def touching(s):
        b = s.boxes
        return any(b[i, 0] <= b[j, 2] and b[j, 0] <= b[i, 2] and b[i, 1] <= b[j, 3] and b[j, 1] <= b[i, 3]
                   for i in range(len(b)) for j in range(i + 1, len(b)))
    assert any(touching(s) for s in samples)


def test_cityscapes_preset_is_wide_and_valid(tmp_path):
    paths = generate_synthetic(tmp_path, "shapes-cityscapes", num_train=6, num_val=2, num_test=1)
    for split in paths.values():
        assert validate_panoptic(split.json_path, split.png_dir, split.image_dir) == []
    sample = CocoPanoptic(paths["train"].json_path, paths["train"].png_dir, paths["train"].image_dir)[0]
    assert (sample.height, sample.width) == (96, 192)
    sky = PRESETS["shapes-cityscapes"].categories()
    sky_index = [c["name"] for c in sky if not c["isthing"]].index("sky")
    assert (sample.stuff_map[0] == sky_index).mean() > 0.5  # the top row is mostly sky


def test_cli_generates_valid_data(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["generate-synthetic", "--preset", "shapes-coco", "--out", str(out), "--num-train", "3",
                 "--num-val", "2", "--num-test", "1", "--seed", "5", "--size", "64x96"]) == 0
    for split in ("train", "val", "test-dev"):
        assert main(["validate-data", "--json", str(out / "annotations" / f"panoptic_{split}.json"),
                     "--png-dir", str(out / "annotations" / f"panoptic_{split}"),
                     "--image-dir", str(out / "images" / split)]) == 0
    data = json.loads((out / "annotations" / "panoptic_val.json").read_text())
    assert [(i["height"], i["width"]) for i in data["images"]] == [(64, 96), (64, 96)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["generate-synthetic", "--out", str(tmp_path / "small"), "--size", "12x12"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("spatialflow generate-synthetic: error: argument --size: 12x12 is out of range; "
                                       "expected HxW with both sides in [32, 4096] (see spatialflow generate-synthetic "
                                       "--help)\n")
    assert not (tmp_path / "small").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    ({"size": (100_000, 100_000)}, r"size must be \(H, W\) with both sides in \[32, 4096\], got \(100000, 100000\)"),
    ({"size": (31, 64)}, r"both sides in \[32, 4096\]"),
    ({"num_train": -3}, r"number of train images must be an integer >= 0, got -3"),
    ({"num_test": 1.5}, r"number of test-dev images must be an integer >= 0, got 1\.5"),
])
def test_function_refuses_sizes_and_counts_out_of_range_before_writing(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_synthetic(tmp_path / "out", **{"num_train": 1, "num_val": 1, "num_test": 1, **arguments})
    assert not (tmp_path / "out").exists()


def test_a_count_of_zero_writes_that_split_without_images(tmp_path):
    paths = generate_synthetic(tmp_path, "shapes-coco", num_train=1, num_val=0, num_test=0, size=(32, 32))
    data = json.loads(paths["val"].json_path.read_text())
    assert data["images"] == [] and data["annotations"] == [] and len(data["categories"]) == 14


def test_preview_shows_image_and_colouring(tmp_path):
    write_preview(tmp_path / "p.png", "shapes-coco", scale=1)
    from PIL import Image
    img = np.asarray(Image.open(tmp_path / "p.png"))
    assert img.shape == (128, 128 + 4 + 128, 3)  # image | 4 px gap | colouring
    assert (img[:, 128:132] == 255).all()
