"""PanopticDataset tensors on the real COCO fixture, with transforms and a DataLoader."""

from __future__ import annotations

import torch

from helpers.paths import FIXTURES
from spatialflow.data.dataset import PanopticDataset, collate
from spatialflow.data.transforms import Compose, RandomHorizontalFlip, ResizeShorterSide

FIXTURE = FIXTURES / "coco_panoptic_sample"


def dataset(transforms=None) -> PanopticDataset:
    return PanopticDataset(FIXTURE / "panoptic_val2017_sample.json", FIXTURE / "panoptic", FIXTURE / "images",
                           transforms)


def test_tensors_of_real_image():
    ds = dataset()
    assert len(ds) == 2 and ds.categories.num_stuff == 53
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 427, 640)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["image_id"] == 142238 and target["orig_size"] == (427, 640)
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (15, 4)
    assert target["labels"].dtype == torch.int64 and target["masks"].dtype == torch.uint8
    assert target["iscrowd"].dtype == torch.bool and int(target["iscrowd"].sum()) == 1
    assert target["stuff"].dtype == torch.int64 and target["stuff"].shape == (427, 640)
    # first person: JSON bbox [282, 207, 48, 149] -> xyxy [282, 207, 330, 356]
    assert target["boxes"][0].tolist() == [282, 207, 330, 356]


def test_transforms_and_collate():
    # 427 x 640, short 128 -> 128 x round(640 * 128 / 427 = 191.8) = 192;
    # 360 x 640 -> 128 x round(640 * 128 / 360 = 227.6) = 228
    ds = dataset(Compose([ResizeShorterSide(128, 1000), RandomHorizontalFlip(0.5)]))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and [tuple(i.shape) for i in images] == [(3, 128, 192), (3, 128, 228)]
    assert [t["image_id"] for t in targets] == [142238, 439180]
    for image, t in zip(images, targets):
        assert t["masks"].shape[1:] == t["stuff"].shape == image.shape[1:]
        assert t["orig_size"][1] == 640
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"])
