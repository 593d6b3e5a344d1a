"""``spatialflow predict``: panoptic predictions (COCO-panoptic JSON + PNGs) of a trained model."""

from __future__ import annotations

import argparse
import json

from spatialflow.cli import existing_dir, existing_file, output_dir, positive_int

HELP = "predict COCO-panoptic segmentations with a trained model (model_final.pt or a checkpoint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=existing_file,
                        help="model_final.pt or checkpoint_XXXXXXXX.pt")
    parser.add_argument("--images", required=True, type=existing_dir, help="folder of the images")
    parser.add_argument("--image-json", type=existing_file,
                        help="COCO JSON listing the images (e.g. test-dev image info); "
                             "default: every .jpg/.png in --images")
    parser.add_argument("--gt-dir", type=existing_dir,
                        help="ground-truth panoptic PNGs: also compute PQ (needs --image-json "
                             "with annotations)")
    parser.add_argument("--out", required=True, type=output_dir,
                        help="output folder (panoptic_pred.json, panoptic_pred/)")
    parser.add_argument("--tta", choices=["coco", "cityscapes"], help="multi-scale + flip test-time augmentation")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward (>= 1)")


def run(args: argparse.Namespace) -> int:
    from spatialflow.engine.distributed import choose_device
    from spatialflow.inference.evaluate import evaluate, image_infos_from_folder, predict_split
    from spatialflow.inference.predict import TTA_PRESETS
    from spatialflow.engine.trainer import load_trained_model
    from spatialflow.errors import ConfigError

    device = choose_device(args.device, key="--device")
    model, cfg, categories = load_trained_model(args.checkpoint, device=device)
    tta = TTA_PRESETS[args.tta] if args.tta else None
    t = cfg.data.transforms
    min_size = t.eval_min_size
    sizes = {"min_size": min_size, "max_size": t.max_size, "tta": tta, "device": device,
             "batch_size": args.batch_size}
    if args.image_json:
        result = evaluate(model, args.image_json, args.images, args.out, png_dir=args.gt_dir, **sizes)
        print(json.dumps(result if result is not None else {"predictions": args.out}, indent=2, default=str))
        return 0
    if args.gt_dir:
        raise ConfigError("--gt-dir needs --image-json (the ground-truth JSON)")
    if categories is None:
        raise ConfigError(f"{args.checkpoint}: has no categories; pass --image-json with a 'categories' list")
    infos = image_infos_from_folder(args.images)
    print(json.dumps(predict_split(model, infos, args.images, categories, args.out, **sizes), indent=2))
    return 0
