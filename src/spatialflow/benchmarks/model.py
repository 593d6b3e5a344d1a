"""``spatialflow bench model``: SpatialFlow vs torchvision's RetinaNet, same image size, same process.

Prints JSON: seconds per image, FLOPs (torch.utils.flop_counter) and parameter counts of both models,
the time ratio and the FLOP ratio. SpatialFlow does about twice RetinaNet's arithmetic (four sub-nets,
the stuff head on P3-P5); the target is time ratio <= 1.1 x FLOP ratio (no overhead beyond arithmetic).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import detection, resnet18, resnet34, resnet50, resnet101
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from spatialflow.models.config import PRESETS, model_config
from spatialflow.models.spatialflow import SpatialFlow

HELP = "SpatialFlow vs torchvision RetinaNet: seconds per image, FLOPs, parameters (JSON)"
_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--depth", type=int, default=50, choices=sorted(_RESNETS))
    parser.add_argument("--size", default="600x1000", help="image HxW (default 600x1000)")
    parser.add_argument("--preset", default="spatialflow", choices=list(PRESETS))
    parser.add_argument("--num-things", type=int, default=80)
    parser.add_argument("--num-stuff", type=int, default=53)
    parser.add_argument("--batch", type=int, default=1, help="images per forward")
    parser.add_argument("--iters", type=int, default=3, help="timed forwards per model")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16) on CUDA")


def retinanet(depth: int, num_classes: int, size: tuple[int, int]) -> nn.Module:
    """torchvision's RetinaNet (v1 layout), no weights, its transform fixed to leave ``size`` unresized."""
    kw = dict(min_size=min(size), max_size=max(size))
    if depth == 50:
        return detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **kw)
    body = _RESNETS[depth](weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return detection.RetinaNet(backbone, num_classes, **kw)


def _measure(model: nn.Module, images: list[torch.Tensor], args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
    with torch.inference_mode(), autocast:
        for _ in range(args.warmup):
            model(images)
        sync()
        start = time.perf_counter()
        for _ in range(args.iters):
            model(images)
        sync()
        seconds = (time.perf_counter() - start) / (args.iters * len(images))
        with FlopCounterMode(display=False) as counter:
            model(images[:1])
    return {
        "seconds_per_image": seconds,
        "flops": int(counter.get_total_flops()),
        "params": sum(p.numel() for p in model.parameters()),
    }


def run(args: argparse.Namespace) -> int:
    height, width = (int(v) for v in args.size.lower().split("x"))
    device = torch.device(args.device)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    cfg = model_config(args.preset, depth=args.depth, num_things=args.num_things, num_stuff=args.num_stuff)
    ours = SpatialFlow(cfg).eval().to(device, memory_format=memory_format)
    theirs = retinanet(args.depth, args.num_things, (height, width)).eval().to(device, memory_format=memory_format)
    images = [torch.rand(3, height, width, device=device) for _ in range(args.batch)]
    sf = _measure(ours, images, args)
    rn = _measure(theirs, images, args)
    time_ratio = sf["seconds_per_image"] / rn["seconds_per_image"]
    flop_ratio = sf["flops"] / rn["flops"]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": [height, width],
        "depth": args.depth,
        "preset": args.preset,
        "batch": args.batch,
        "channels_last": args.channels_last,
        "amp": args.amp,
        "spatialflow": sf,
        "retinanet": rn,
        "time_ratio": time_ratio,
        "flop_ratio": flop_ratio,
        "target_time_ratio": 1.1 * flop_ratio,
        "within_target": time_ratio <= 1.1 * flop_ratio,
        "note": "FlopCounterMode does not count torchvision.ops custom kernels (deform_conv2d, RoIAlign, NMS)",
    }
    print(json.dumps(report, indent=2))
    return 0
