"""Transforms keep image, masks, boxes and stuff map consistent; batching pads with a valid mask."""

from __future__ import annotations

import random

import pytest
import torch

from spatialflow.data.batching import pad_images, pad_label_maps, padded_size
from spatialflow.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    RandomScaleCrop,
    ResizeShorterSide,
    ResizeShorterSideRange,
    crop,
    resized_size,
)


def make_sample() -> tuple[torch.Tensor, dict]:
    """4 x 6 image; instance 0 at rows 1-2, cols 1-3 (box [1, 1, 4, 3]); instance 1 at row 3, col 5."""
    image = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6) / 72
    masks = torch.zeros((2, 4, 6), dtype=torch.uint8)
    masks[0, 1:3, 1:4] = 1
    masks[1, 3, 5] = 1
    stuff = torch.tensor([[0, 0, 0, 1, 1, 1]] * 4)
    stuff[masks.bool().any(0)] = 2  # 'other'
    stuff[0, 0] = 255
    target = {"image_id": 7, "boxes": torch.tensor([[1.0, 1, 4, 3], [5, 3, 6, 4]]), "labels": torch.tensor([3, 4]),
              "masks": masks, "iscrowd": torch.tensor([False, True]), "stuff": stuff, "orig_size": (4, 6)}
    return image, target


def test_horizontal_flip_mirrors_everything():
    image, target = make_sample()
    out_image, out = RandomHorizontalFlip(p=1.0)(image, target)
    # width 6: x1' = 6 - x2, x2' = 6 - x1 -> [6-4, 1, 6-1, 3] = [2, 1, 5, 3] and [0, 3, 1, 4]
    assert out["boxes"].tolist() == [[2, 1, 5, 3], [0, 3, 1, 4]]
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out["masks"][0, 1], torch.tensor([0, 0, 1, 1, 1, 0], dtype=torch.uint8))
    assert out["stuff"][0, 5] == 255 and out["stuff"][0, 0] == 1
    assert out["image_id"] == 7 and torch.equal(out["labels"], target["labels"])
    same_image, same = RandomHorizontalFlip(p=0.0)(image, target)
    assert same_image is image and same is target


def test_resized_size():
    assert resized_size((4, 6), 8, 100) == (8, 12)  # scale 8/4 = 2
    assert resized_size((4, 6), 8, 9) == (6, 9)  # 6 * 2 = 12 > 9 -> scale 9/6 = 1.5
    assert resized_size((480, 640), 800, 1333) == (800, 1067)  # 640 * 800/480 = 1066.7 -> 1067


def test_resize_shorter_side_upscales_masks_and_boxes_exactly():
    image, target = make_sample()
    out_image, out = ResizeShorterSide(8, 100)(image, target)
    assert out_image.shape == (3, 8, 12) and out["masks"].shape == (2, 8, 12) and out["stuff"].shape == (8, 12)
    # exact x2 nearest upsampling: each box coordinate doubles
    assert out["boxes"].tolist() == [[2, 2, 8, 6], [10, 6, 12, 8]]
    assert out["masks"][0].sum() == 4 * 6  # 2 x 3 pixels -> 4 x 6
    assert out["stuff"][:2, :2].eq(255).all() and out["stuff"][7, 11] == 2
    assert out["masks"].dtype == torch.uint8 and out["stuff"].dtype == torch.int64
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0


def test_resize_picks_short_side_from_tuple_and_drops_vanished_instances():
    random.seed(0)
    image, target = make_sample()
    sizes = {ResizeShorterSide((8, 12), 100)(image, target)[0].shape[-2] for _ in range(20)}
    assert sizes == {8, 12}
    # down to 2 x 3: nearest sampling takes source rows 0, 2 and cols 0, 2, 4 -> the 1-pixel instance at
    # (3, 5) vanishes and is dropped with its label and crowd flag; instance 0 keeps pixel (2, 2) -> (1, 1)
    _, small = ResizeShorterSide(2, 100)(image, target)
    assert small["labels"].tolist() == [3] and small["iscrowd"].tolist() == [False]
    assert small["boxes"].tolist() == [[1, 1, 2, 2]]


def test_crop_keeps_boxes_consistent_and_drops_instances_outside():
    image, target = make_sample()
    out_image, out = crop(image, target, top=1, left=2, height=2, width=3)
    assert torch.equal(out_image, image[:, 1:3, 2:5])
    # instance 0 (cols 1-3) cut to cols 2-3 -> local cols 0-1, rows 0-1; instance 1 outside -> dropped
    assert out["boxes"].tolist() == [[0, 0, 2, 2]] and out["labels"].tolist() == [3]
    assert torch.equal(out["stuff"], target["stuff"][1:3, 2:5])


def test_random_scale_crop_is_consistent():
    random.seed(1)
    image, target = make_sample()
    for _ in range(10):
        out_image, out = RandomScaleCrop(scale=(0.5, 2.0), crop=(4, 5))(image, target)
        h, w = out_image.shape[-2:]
        assert h <= 4 and w <= 5 and out["stuff"].shape == (h, w) and out["masks"].shape[-2:] == (h, w)
        for box, mask in zip(out["boxes"], out["masks"]):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert len(out["labels"]) == len(out["boxes"]) == len(out["iscrowd"])
    # scale fixed at 2 on 4 x 6 -> 8 x 12, crop 8 x 12 keeps everything: boxes double
    _, full = RandomScaleCrop(scale=(2.0, 2.0), crop=(8, 12))(image, target)
    assert full["boxes"].tolist() == [[2, 2, 8, 6], [10, 6, 12, 8]]


def test_compose_applies_in_order():
    image, target = make_sample()
    out_image, out = Compose([ResizeShorterSide(8, 100), RandomHorizontalFlip(p=1.0)])(image, target)
    # resize: [[2, 2, 8, 6], [10, 6, 12, 8]]; flip at width 12: [12-8, 2, 12-2, 6], [0, 6, 2, 8]
    assert out["boxes"].tolist() == [[4, 2, 10, 6], [0, 6, 2, 8]]


def test_pad_images_and_label_maps():
    a, b = torch.ones(3, 5, 7), torch.full((3, 33, 2), 2.0)
    assert padded_size([(5, 7), (33, 2)]) == (64, 32)  # max H 33 -> 64, max W 7 -> 32
    batch, valid = pad_images([a, b])
    assert batch.shape == (2, 3, 64, 32) and valid.shape == (2, 64, 32)
    assert valid[0].sum() == 35 and valid[1].sum() == 66  # 5*7 and 33*2
    assert batch[0, :, :5, :7].eq(1).all() and batch[0].sum() == 3 * 35
    assert batch[1, :, :33, :2].eq(2).all() and batch[1, :, 33:].eq(0).all()
    maps = pad_label_maps([torch.zeros(5, 7, dtype=torch.long), torch.ones(33, 2, dtype=torch.long)], (64, 32))
    assert maps.shape == (2, 64, 32)
    assert maps[0, :5, :7].eq(0).all() and maps[0].eq(255).sum() == 64 * 32 - 35
    assert maps[1, :33, :2].eq(1).all() and maps[1].eq(255).sum() == 64 * 32 - 66


def test_images_without_things_pass_every_transform():
    """An image with no thing instances (N = 0) keeps empty targets and a resized stuff map."""
    image, target = make_sample()
    empty = {**target, "boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 4, 6), dtype=torch.uint8), "iscrowd": torch.zeros(0, dtype=torch.bool)}
    random.seed(0)
    for transform in (ResizeShorterSide(8, 100), RandomHorizontalFlip(1.0), RandomScaleCrop((0.5, 2.0), (4, 4))):
        out_image, out = transform(image, dict(empty))
        assert out["masks"].shape[0] == 0 and out["boxes"].shape == (0, 4) and out["labels"].numel() == 0
        assert out["stuff"].shape == out_image.shape[-2:]
    _, resized = ResizeShorterSide(8, 100)(image, dict(empty))
    assert resized["stuff"].shape == (8, 12)  # 4 x 6 -> shorter side 8 (scale 2)


def test_range_resize_draws_every_integer_shorter_side_in_the_range():
    """mmdet multiscale_mode='range': np.random.randint(low, high + 1), so both ends are drawn."""
    random.seed(0)
    image, target = make_sample()
    heights = {ResizeShorterSideRange((2, 4), 100)(image, target)[0].shape[-2] for _ in range(40)}
    assert heights == {2, 3, 4}  # 4 x 6: the shorter side is the height


def test_range_resize_bounds_of_the_table6_recipe():
    """480 x 640 with range (400, 1400) and max 1600: scale = min(short / 480, 1600 / 640 = 2.5), so the
    shorter side lies in [400, 1200] (1200 = 2.5 * 480) and the longer side in [533, 1600]."""
    assert resized_size((480, 640), 400, 1600) == (400, 533)  # 640 * 400/480 = 533.3
    assert resized_size((480, 640), 1200, 1600) == (1200, 1600)
    assert resized_size((480, 640), 1400, 1600) == (1200, 1600)  # 640 * 1400/480 = 1866.7 > 1600 -> capped
    random.seed(3)
    transform = ResizeShorterSideRange((400, 1400), 1600)
    image = torch.zeros(3, 480, 640)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 480, 640), dtype=torch.uint8), "iscrowd": torch.zeros(0, dtype=torch.bool),
             "stuff": torch.zeros((480, 640), dtype=torch.int64)}
    for _ in range(8):
        out_image, out = transform(image, dict(empty))
        h, w = out_image.shape[-2:]
        assert 400 <= h <= 1200 and 533 <= w <= 1600 and out["stuff"].shape == (h, w)


def test_range_resize_rejects_an_empty_range():
    with pytest.raises(ValueError, match="low <= high"):
        ResizeShorterSideRange((1400, 400), 1600)


def test_build_transforms_uses_the_range_when_training_and_min_size_when_evaluating():
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.engine.trainer import build_transforms

    cfg = load_experiment_config({"model": {"preset": "spatialflow"}, "data": {"transforms": {
        "min_size": 800, "min_size_range": [400, 1400], "max_size": 1600}}})
    train, test = build_transforms(cfg, train=True).transforms, build_transforms(cfg, train=False).transforms
    assert isinstance(train[0], ResizeShorterSideRange) and train[0].short_range == (400, 1400)
    assert train[0].max_size == 1600
    assert isinstance(test[0], ResizeShorterSide) and test[0].short == (800,) and test[0].max_size == 1600


@pytest.mark.parametrize("transforms, message", [
    ({"min_size": [640, 800], "min_size_range": [400, 1400]}, "data.transforms.min_size_range: a range and a list"),
    ({"min_size_range": [1400, 400]}, "data.transforms.min_size_range: must be (low, high) with low <= high"),
    ({"min_size_range": [400, 1400], "scale_crop": {"scale": [0.5, 2.0], "crop": [512, 1024]}},
     "data.transforms.min_size_range: training with scale_crop"),
])
def test_range_config_errors_name_the_key(transforms, message):
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_experiment_config({"model": {"preset": "spatialflow"}, "data": {"transforms": transforms}})
    assert message in str(err.value) and "\n" not in str(err.value)
