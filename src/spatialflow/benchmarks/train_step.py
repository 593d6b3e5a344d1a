"""``spatialflow bench train``: seconds per training iteration of the tiny rows, as a ratio to a plain ResNet.

The floor is torchvision's ResNet of the same depth, forward + backward (+ the same optimizer step) on the
same padded batch: no detector can train faster than its backbone. Each repeat runs the floor and every
model for ``--iters`` steps, interleaved (floor, baseline, spatialflow, floor, ...), so a busy neighbour
slows all sides alike; the figure of each side is the minimum over repeats, and min / median / max are
printed next to it, with the spread of the per-round ratios (``spatialflow.benchmarks.interleave``, shared
with ``bench model`` and ``bench pq``). Targets: baseline <= 2.5x the floor, full SpatialFlow <= 4x.

The batch is synthetic shapes-coco at the tiny profile's training size, through the real data pipeline
(PanopticDataset, transforms, collate); the model widths default to the tiny profile's.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from spatialflow.benchmarks.interleave import ratio, spread, time_interleaved

HELP = "seconds per training iteration of the tiny rows vs a plain ResNet forward + backward (JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spatialflow.cli import positive_int, size_hw

    parser.add_argument("--presets", default="baseline,spatialflow", help="comma-separated model presets")
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34, 50, 101))
    parser.add_argument("--size", type=size_hw(32, 8192), default="96x128",
                        help="training image HxW, sides in [32, 8192] (default: the tiny profile's 800)")
    parser.add_argument("--batch", type=positive_int, default=4)
    parser.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds (min is reported)")
    parser.add_argument("--iters", type=positive_int, default=3, help="timed steps per side and round")
    parser.add_argument("--fpn-channels", type=positive_int, default=64)
    parser.add_argument("--stuff-channels", type=positive_int, default=32)
    parser.add_argument("--stuff-groups", type=positive_int, default=8)
    parser.add_argument("--mask-channels", type=positive_int, default=64)
    parser.add_argument("--anchor-octave-base-scale", type=float, default=2.0)
    parser.add_argument("--train-max-proposals", type=positive_int, default=8)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--amp", default="none", help="comma-separated autocast modes to compare per preset: "
                        "none, bf16 (a side '<preset>@bf16' each; bf16 needs a CPU with native bfloat16)")


def _batch(size: tuple[int, int], count: int):
    from spatialflow.data.dataset import PanopticDataset, collate
    from spatialflow.data.synthetic import generate_synthetic
    from spatialflow.data.transforms import Compose, RandomHorizontalFlip, ResizeShorterSide

    with tempfile.TemporaryDirectory(prefix="spatialflow-bench-train-") as folder:  # the batch is read into memory
        split = generate_synthetic(folder, "shapes-coco", num_train=count, num_val=1, num_test=1, size=size)["train"]
        data = PanopticDataset(split.json_path, split.png_dir, split.image_dir,
                               Compose([ResizeShorterSide(min(size), max(size)), RandomHorizontalFlip(0.0)]))
        return collate([data[i] for i in range(count)])


def run(args: argparse.Namespace) -> int:
    from torchvision import models

    from spatialflow.data.batching import pad_images
    from spatialflow.models.config import model_config
    from spatialflow.models.spatialflow import SpatialFlow

    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = args.size
    images, targets = _batch((height, width), args.batch)
    torch.manual_seed(0)

    floor_net = getattr(models, f"resnet{args.depth}")(weights=None)
    floor_opt = torch.optim.AdamW(floor_net.parameters(), lr=1e-4, fused=True)  # as the trainer (fused AdamW)
    padded, _ = pad_images(images)

    def floor_step() -> None:
        loss = floor_net(padded).float().mean()
        floor_opt.zero_grad(set_to_none=True)
        loss.backward()
        floor_opt.step()

    steps = {"resnet_floor": floor_step}
    amps = [mode.strip() for mode in args.amp.split(",")]
    unknown = sorted(set(amps) - {"none", "bf16"})
    if unknown:
        raise SystemExit(f"spatialflow bench train: --amp {','.join(unknown)}: expected none or bf16")
    for preset, amp in [(preset, amp) for preset in args.presets.split(",") for amp in amps]:
        cfg = model_config(preset, depth=args.depth, num_things=8, num_stuff=6, fpn_channels=args.fpn_channels,
                           stuff_channels=args.stuff_channels, stuff_groups=args.stuff_groups,
                           mask_channels=args.mask_channels, frozen_stages=1,
                           anchor_octave_base_scale=args.anchor_octave_base_scale,
                           train_max_proposals=args.train_max_proposals)
        model = SpatialFlow(cfg).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)

        def step(model=model, optimizer=optimizer, amp=amp) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):  # as the trainer's amp: bf16
                losses = model(images, targets)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()

        steps[preset if amp == "none" else f"{preset}@{amp}"] = step
    for step in steps.values():  # warm-up: allocator, oneDNN kernels
        step()
    times = time_interleaved(steps, args.repeats, args.iters)  # every side sees the same neighbours
    report = {"depth": args.depth, "size": [height, width], "batch": args.batch, "repeats": args.repeats,
              "iters_per_repeat": args.iters, "threads": torch.get_num_threads(), "seconds_per_iteration": {},
              "ratio_to_floor": {}}
    report["ratio_spread_to_floor"] = {}
    for name, values in times.items():
        report["seconds_per_iteration"][name] = spread(values, 4)
        if name != "resnet_floor":
            to_floor = ratio(values, times["resnet_floor"], 2)
            report["ratio_to_floor"][name] = to_floor["ratio"]
            report["ratio_spread_to_floor"][name] = to_floor["per_round"]
    report["targets"] = {"baseline": 2.5, "spatialflow": 4.0}
    print(json.dumps(report, indent=2))
    return 0
