"""GPU check (``scripts/gpu_check.sh``): the CUDA paths that CPU runs never reach, in one short run.

Three pieces, one JSON summary on stdout:

1. ``bench model`` (SpatialFlow vs RetinaNet, interleaved) at ``--size`` for ResNet-50 and ResNet-101, with
   and without bf16 autocast: images per second of both models and the time ratio;
2. one training step of SpatialFlow-R50 under ``torchrun`` (one process) in DistributedDataParallel, over
   NCCL on CUDA (gloo on CPU), bf16 autocast on CUDA, on a synthetic shapes-coco batch;
3. ``--row-iters`` iterations of a tiny row (ResNet-18, narrow heads) through ``engine.trainer.train``, the
   code path of ``spatialflow train`` and the pipeline.

``--device cpu`` runs every piece on the CPU with small defaults (the test of this module); on a GPU machine
the defaults are the issue's: 600x1000, 200 tiny-row iterations, all within 8 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

#: The paper's figure to beat (one V100, 600x1000), for ours on a current GPU.
PAPER_IMAGES_PER_S = 10.0
TARGET_IMAGES_PER_S = 20.0
#: shapes-coco's categories (``spatialflow generate-synthetic``).
SYNTHETIC_THINGS, SYNTHETIC_STUFF = 8, 6
TINY_MODEL = {"preset": "spatialflow", "depth": 18, "fpn_channels": 32, "stuff_channels": 32, "stuff_groups": 8,
              "mask_channels": 32}
#: Small sizes for ``--device cpu`` (every piece runs, in about a minute on 2 cores).
CPU_DEFAULTS = {"size": "64x96", "repeats": 2, "row_iters": 5, "step_size": "64x64"}
GPU_DEFAULTS = {"size": "600x1000", "repeats": 5, "row_iters": 200, "step_size": "512x512"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--size", help="model bench image HxW (cuda: 600x1000, cpu: 64x96)")
    parser.add_argument("--depths", default="50,101", help="backbone depths of the model bench (default 50,101)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds of the model bench (cuda: 5, cpu: 2)")
    parser.add_argument("--step-size", help="image HxW of the torchrun training step (cuda: 512x512, cpu: 64x64)")
    parser.add_argument("--row-iters", type=int, help="tiny-row training iterations (cuda: 200, cpu: 5)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for the torchrun step")
    return parser


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    defaults = GPU_DEFAULTS if args.device == "cuda" else CPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ----------------------------------------------------------------------------------- 1. model bench


def model_bench(device: str, size: str, depth: int, amp: bool, repeats: int) -> dict:
    """``bench model`` for one depth and autocast setting: images/s of both models and the time ratio."""
    from spatialflow.benchmarks import model

    parser = argparse.ArgumentParser()
    model.add_arguments(parser)
    argv = ["--device", device, "--size", size, "--depth", str(depth), "--repeats", str(repeats),
            "--warmup", "3" if device == "cuda" else "1"]  # CUDA: context, cuDNN and allocator settle first
    report = model.report(parser.parse_args(argv + (["--amp"] if amp else [])))
    return {"depth": depth, "amp": report["amp"], "size": report["size"],
            "spatialflow_images_per_s": report["spatialflow"]["images_per_s"],
            "retinanet_images_per_s": report["retinanet"]["images_per_s"],
            "time_ratio": report["time_ratio"], "flop_ratio": report["flop_ratio"]}


# ------------------------------------------------------------------------------ 2. torchrun DDP step


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_step(device: str, step_size: str, timeout: float) -> dict:
    """One SpatialFlow-R50 training step in a ``torchrun`` process (NCCL on CUDA, gloo on CPU)."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as folder:
        out = Path(folder) / "step.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr",
                   "127.0.0.1", "--master_port", str(_free_port()), "-m", "spatialflow.benchmarks.gpu_check",
                   "--ddp-worker", str(out), "--device", device, "--step-size", step_size]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            return {"ok": False, "returncode": done.returncode, "stderr_tail": done.stderr[-2000:]}
        report = json.loads(out.read_text())
    return {"ok": True, "wall_seconds_with_launch": round(time.perf_counter() - start, 2), **report}


def _synthetic_batch(size: tuple[int, int], count: int):
    from spatialflow.benchmarks.train_step import _batch

    return _batch(size, count)


def ddp_worker(out: str, device_name: str, step_size: str) -> None:
    """Run by torchrun: join the process group, wrap SpatialFlow-R50 in DDP, one step, write JSON to ``out``."""
    import torch.distributed as dist

    from spatialflow.engine.trainer import _autocast, _to_device
    from spatialflow.models.config import model_config
    from spatialflow.models.spatialflow import SpatialFlow

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if device_name == "cuda" else torch.device("cpu")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group(backend, device_id=device)
    else:
        dist.init_process_group(backend)
    try:
        height, width = (int(v) for v in step_size.lower().split("x"))
        images, targets = _synthetic_batch((height, width), 2)
        images, targets = _to_device(images, device), _to_device(targets, device)
        torch.manual_seed(0)
        cfg = model_config("spatialflow", depth=50, num_things=SYNTHETIC_THINGS, num_stuff=SYNTHETIC_STUFF)
        model = SpatialFlow(cfg).to(device).train()
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda"
                                                        else None)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        amp = "bf16" if device.type == "cuda" else "none"
        start = time.perf_counter()
        with _autocast(amp, device):
            losses = ddp(images, targets)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()  # DDP all-reduces the gradients over the process group here
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        check = torch.ones(1, device=device)
        dist.all_reduce(check)
        report = {"backend": dist.get_backend(), "world_size": dist.get_world_size(), "amp": amp,
                  "size": [height, width], "batch": len(images), "depth": 50, "step_seconds": round(seconds, 3),
                  "loss": float(losses["total"].detach()), "all_reduce": float(check.item()),
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
        Path(out).write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------- 3. tiny row


def tiny_row(device: str, iterations: int) -> dict:
    """``iterations`` steps of a tiny row (64x64 synthetic shapes-coco, ResNet-18) through ``train``."""
    from spatialflow.data.synthetic import generate_synthetic
    from spatialflow.engine.config import ExperimentConfig
    from spatialflow.engine.trainer import train

    with tempfile.TemporaryDirectory(prefix="gpu-check-row-") as folder:
        split = generate_synthetic(Path(folder) / "data", "shapes-coco", num_train=8, num_val=1, num_test=1,
                                   seed=0, size=(64, 64))["train"]
        cfg = ExperimentConfig.model_validate({
            "name": "gpu-check", "output_dir": str(Path(folder) / "run"), "model": TINY_MODEL,
            "data": {"train": {"json": str(split.json_path), "png_dir": str(split.png_dir),
                               "image_dir": str(split.image_dir)},
                     "transforms": {"min_size": 64, "max_size": 64, "flip": 0.5}},
            "train": {"optimizer": "adamw", "lr": 1e-3, "batch_size": 4, "unit": "iteration",
                      "length": iterations, "decay_steps": [iterations], "warmup_iters": min(10, iterations),
                      "amp": "bf16" if device == "cuda" else "none"},
            "run": {"checkpoint_every": iterations, "log_every": max(1, iterations // 4), "num_workers": 0,
                    "device": device},
        })
        result = train(cfg)
    losses = result.last_losses
    return {"iterations": result.iterations, "seconds": round(result.seconds, 3),
            "iterations_per_second": round(result.iterations_per_second, 3), "amp": cfg.train.amp,
            "last_total_loss": losses.get("total"),
            "losses_finite": all(math.isfinite(v) for v in losses.values())}


# ----------------------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict:
    args = _with_defaults(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: CUDA is not available (use --device cpu to run the pieces on the CPU)")
    start = time.perf_counter()
    summary: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
                     "torch": torch.__version__, "cuda": torch.version.cuda, "model_bench": []}
    for depth in (int(d) for d in args.depths.split(",")):
        for amp in (False, True):
            summary["model_bench"].append(model_bench(args.device, args.size, depth, amp, args.repeats))
    summary["ddp_step"] = ddp_step(args.device, args.step_size, args.timeout)
    summary["tiny_row"] = tiny_row(args.device, args.row_iters)
    best = max(entry["spatialflow_images_per_s"] for entry in summary["model_bench"])
    summary["best_spatialflow_images_per_s"] = best
    summary["paper_images_per_s_v100"] = PAPER_IMAGES_PER_S
    summary["target_images_per_s"] = TARGET_IMAGES_PER_S
    summary["ok"] = summary["ddp_step"]["ok"] and summary["tiny_row"]["losses_finite"]
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--ddp-worker"]:
        worker = argparse.ArgumentParser()
        worker.add_argument("--ddp-worker", required=True)
        worker.add_argument("--device", required=True)
        worker.add_argument("--step-size", required=True)
        args = worker.parse_args(argv)
        ddp_worker(args.ddp_worker, args.device, args.step_size)
        return 0
    summary = run(build_parser().parse_args(argv))
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
