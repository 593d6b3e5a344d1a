"""``spatialflow bench model``: SpatialFlow vs torchvision's RetinaNet, same image size, same process.

Prints JSON: seconds per image, FLOPs (torch.utils.flop_counter) and parameter counts of both models,
the time ratio and the FLOP ratio. The two models run interleaved (``--repeats`` rounds of ``--iters``
forwards each, ``spatialflow.benchmarks.interleave``): each model's figure is its minimum over rounds, with
min / median / max next to it, and the time ratio is the ratio of the minima with its per-round spread.
SpatialFlow does about twice RetinaNet's arithmetic (four sub-nets, the stuff head on P3-P5); the target
is time ratio <= 1.1 x FLOP ratio (no overhead beyond arithmetic). How each figure is measured and what it
is compared with: docs/reports/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from spatialflow.benchmarks.interleave import ratio, spread, time_interleaved
from spatialflow.models.config import BACKBONE_DEPTHS, PRESETS, model_config
from spatialflow.models.resnet import build_resnet
from spatialflow.models.spatialflow import SpatialFlow

HELP = "SpatialFlow vs torchvision RetinaNet: seconds per image, FLOPs, parameters (JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spatialflow.cli import positive_int, size_hw

    parser.add_argument("--depth", type=int, default=50, choices=BACKBONE_DEPTHS)
    parser.add_argument("--size", type=size_hw(32, 8192), default="600x1000",
                        help="image HxW, sides in [32, 8192] (default 600x1000)")
    parser.add_argument("--preset", default="spatialflow", choices=list(PRESETS))
    parser.add_argument("--num-things", type=int, default=80)
    parser.add_argument("--num-stuff", type=int, default=53)
    parser.add_argument("--batch", type=int, default=1, help="images per forward")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="interleaved rounds; the minimum per model is reported (default 5)")
    parser.add_argument("--iters", type=positive_int, default=1, help="timed forwards per model and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per model first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16) on CUDA")


def retinanet(depth: int, num_classes: int, size: tuple[int, int]) -> nn.Module:
    """torchvision's RetinaNet (v1 layout), no weights, its transform fixed to leave ``size`` unresized."""
    kw = dict(min_size=min(size), max_size=max(size))
    if depth == 50:
        return detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **kw)
    body = build_resnet(depth, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return detection.RetinaNet(backbone, num_classes, **kw)


def _autocast(args: argparse.Namespace):
    device = torch.device(args.device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")


def _forward(model: nn.Module, images: list[torch.Tensor], args: argparse.Namespace):
    """One call that runs ``model`` on ``images`` under inference mode (and autocast with --amp)."""
    def call() -> None:
        with torch.inference_mode(), _autocast(args):
            model(images)
    return call


def _size_of(model: nn.Module, images: list[torch.Tensor], args: argparse.Namespace) -> dict:
    """FLOPs of one image (torch.utils.flop_counter) and parameter count."""
    with torch.inference_mode(), _autocast(args), FlopCounterMode(display=False) as counter:
        model(images[:1])
    return {"flops": int(counter.get_total_flops()), "params": sum(p.numel() for p in model.parameters())}


def report(args: argparse.Namespace) -> dict:
    """Both models timed interleaved (SpatialFlow, RetinaNet, SpatialFlow, ...): the figures as a dict."""
    height, width = args.size
    device = torch.device(args.device)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    cfg = model_config(args.preset, depth=args.depth, num_things=args.num_things, num_stuff=args.num_stuff)
    models = {"spatialflow": SpatialFlow(cfg).eval().to(device, memory_format=memory_format),
              "retinanet": retinanet(args.depth, args.num_things, (height, width)).eval().to(
                  device, memory_format=memory_format)}
    images = [torch.rand(3, height, width, device=device) for _ in range(args.batch)]
    calls = {name: _forward(model, images, args) for name, model in models.items()}
    for call in calls.values():  # warm-up: allocator, cuDNN / oneDNN kernel choice
        for _ in range(args.warmup):
            call()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = time_interleaved(calls, args.repeats, args.iters, sync=sync)
    per_image = {name: [s / len(images) for s in values] for name, values in seconds.items()}
    sizes = {name: _size_of(model, images, args) for name, model in models.items()}
    sides = {name: {"seconds_per_image": min(per_image[name]), "seconds_per_image_spread": spread(per_image[name]),
                    "images_per_s": 1.0 / min(per_image[name]), **sizes[name]} for name in models}
    time_ratio = ratio(per_image["spatialflow"], per_image["retinanet"])
    flop_ratio = sizes["spatialflow"]["flops"] / sizes["retinanet"]["flops"]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": [height, width],
        "depth": args.depth,
        "preset": args.preset,
        "batch": args.batch,
        "channels_last": args.channels_last,
        "amp": args.amp and device.type == "cuda",
        "repeats": args.repeats,
        "iters_per_repeat": args.iters,
        "spatialflow": sides["spatialflow"],
        "retinanet": sides["retinanet"],
        "time_ratio": time_ratio["ratio"],
        "time_ratio_per_repeat": time_ratio["per_round"],
        "flop_ratio": flop_ratio,
        "target_time_ratio": 1.1 * flop_ratio,
        "within_target": time_ratio["ratio"] <= 1.1 * flop_ratio,
        "note": "FlopCounterMode does not count torchvision.ops custom kernels (deform_conv2d, RoIAlign, NMS)",
    }


def run(args: argparse.Namespace) -> int:
    print(json.dumps(report(args), indent=2))
    return 0
