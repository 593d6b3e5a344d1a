"""PyTorch dataset over a COCO-panoptic set: image tensor + detection/segmentation targets."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch

from spatialflow.data.categories import CategoryMap
from spatialflow.data.coco_panoptic import CocoPanoptic, PanopticSample


def sample_to_tensors(sample: PanopticSample) -> tuple[torch.Tensor, dict]:
    """A decoded sample -> (float32 (3, H, W) image in [0, 1], target dict of tensors)."""
    if sample.image is None:
        raise ValueError("sample has no image (reader built without image_dir)")
    image = torch.from_numpy(sample.image.copy()).permute(2, 0, 1).float().div_(255.0)
    target = {
        "image_id": sample.image_id,
        "boxes": torch.from_numpy(sample.boxes).float().reshape(-1, 4),
        "labels": torch.from_numpy(sample.labels).long(),
        "masks": torch.from_numpy(sample.masks).to(torch.uint8),
        "iscrowd": torch.from_numpy(sample.iscrowd).bool(),
        "stuff": torch.from_numpy(sample.stuff_map).long(),
        "orig_size": (sample.height, sample.width),
    }
    return image, target


class PanopticDataset(torch.utils.data.Dataset):
    """Training/evaluation samples: ``(image, target)`` with target keys image_id, boxes (xyxy), labels,
    masks (uint8), iscrowd, stuff (stuff 0..S-1, other S, void 255) and orig_size (H0, W0)."""

    def __init__(
        self,
        json_path: str | os.PathLike,
        png_dir: str | os.PathLike,
        image_dir: str | os.PathLike,
        transforms: Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]] | None = None,
    ) -> None:
        self.reader = CocoPanoptic(json_path, png_dir, image_dir)
        self.transforms = transforms

    @property
    def categories(self) -> CategoryMap:
        return self.reader.categories

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        image, target = sample_to_tensors(self.reader[i])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Keep images and targets as lists (sizes differ; the model pads with ``pad_images``)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for drawing sample ``index`` of ``epoch`` in a run seeded with ``seed``."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()[:8], "little")


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, numpy's and torch's CPU generators with ``seed`` for the block, then put back the states
    they had before (the caller's own random stream is not consumed)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.random.default_generator.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class EpochSamples(torch.utils.data.Dataset):
    """``dataset`` as seen in one training epoch: sample ``i`` is drawn with the global random generators
    seeded from (seed, epoch, i), so its random augmentation (flip, size, crop) is a function of those three
    alone: not of the data-loader worker that loads it, of the samples loaded before it, or of where a
    resumed run started."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        with seeded_global_rngs(sample_seed(self.seed, self.epoch, i)):
            return self.dataset[i]
