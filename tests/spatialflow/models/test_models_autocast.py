"""Under bfloat16 autocast the model's gradients are repeatable; P6 / P7 are computed in float32.

On the AMD EPYC here, oneDNN's bfloat16 weight gradient of P7's 3x3 stride-2 convolution on a 1x1 input read
uninitialised memory (garbage up to 1e27, different every step) before P6 / P7 were kept in float32."""

from __future__ import annotations

import torch
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from spatialflow.models.backbone import LastLevelP6P7Float32
from spatialflow.models.config import model_config
from spatialflow.models.spatialflow import SpatialFlow


def _batch(folder):
    """Two synthetic 64x64 scenes: C5 is 2x2, P6 1x1, so P7's convolution sees a 1x1 input (the case that failed)."""
    from spatialflow.data.dataset import PanopticDataset, collate
    from spatialflow.data.synthetic import generate_synthetic
    from spatialflow.data.transforms import Compose, RandomHorizontalFlip, ResizeShorterSide

    split = generate_synthetic(folder, "shapes-coco", num_train=2, num_val=1, num_test=1, seed=0, size=(64, 64))["train"]
    data = PanopticDataset(split.json_path, split.png_dir, split.image_dir,
                           Compose([ResizeShorterSide(64, 64), RandomHorizontalFlip(0.0)]))
    return collate([data[0], data[1]])


def test_bf16_gradients_repeat_bit_for_bit_with_dirty_memory(tmp_path):
    torch.set_num_threads(1)
    images, targets = _batch(tmp_path)
    torch.manual_seed(0)
    model = SpatialFlow(model_config("spatialflow", depth=18, num_things=8, num_stuff=6, fpn_channels=16,
                                     stuff_channels=16, stuff_groups=4, mask_channels=16)).train()

    def grads():
        model.zero_grad()
        junk = [torch.full((1 << 16,), 1e30) for _ in range(50)]  # leave garbage in the allocator's blocks
        del junk
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(images, targets)
        losses["total"].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    first, *others = [grads() for _ in range(3)]
    for other in others:
        assert [n for n in first if not torch.equal(first[n], other[n])] == []
    p7 = first["backbone.fpn.extra_blocks.p7.weight"]
    assert torch.isfinite(p7).all() and p7.abs().max() < 1e3
    # a 1x1 input, padding 1, stride 2: only the centre tap sees data, the others multiply zero padding
    assert torch.count_nonzero(p7[..., [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]]) == 0


def test_p6_p7_are_float32_under_autocast_and_torchvisions_block_without():
    torch.manual_seed(0)
    ours, theirs = LastLevelP6P7Float32(8, 4), LastLevelP6P7(8, 4)
    theirs.load_state_dict(ours.state_dict())
    ours.use_P5 = theirs.use_P5 = False
    p, c = [torch.rand(1, 4, 4, 4)], [torch.rand(1, 8, 4, 4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, names = ours(list(p), c, ["p5"])
    assert names == ["p5", "p6", "p7"] and [t.dtype for t in out[1:]] == [torch.float32, torch.float32]
    mine, tv = ours(list(p), c, ["p5"])[0], theirs(list(p), c, ["p5"])[0]
    assert all(torch.equal(a, b) for a, b in zip(mine, tv))
