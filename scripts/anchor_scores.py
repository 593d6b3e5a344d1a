"""Why a detector's things fall below the merge threshold: its scores on each object's anchors.

    python scripts/anchor_scores.py data/06_models/t2_baseline/seed0/model_final.pt

For every (non-crowd) val object of the checkpoint's own data set: the best IoU any anchor has with it, the
number of positive anchors (IoU >= the matcher's high threshold), the highest score of the object's class on
its positive anchors (on its best anchor when it has none), and the highest score of that class on the
*nearby negative* anchors (0.05 < IoU < the matcher's low threshold: anchors training labels background).
Prints the 10/25/50/75/90 % quantiles over objects as JSON. When the two score rows are alike, the
classifier cannot yet tell an object's anchors from their neighbours, and focal loss then keeps every one
of them low (docs/reports/learning_curve.md, section 2026-11-30).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torchvision.ops import box_iou

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
NEARBY_MIN_IOU = 0.05


@torch.inference_mode()
def anchor_scores(model: torch.nn.Module, dataset, max_images: int | None = None) -> dict:
    """Per-object anchor statistics of ``model`` on ``dataset`` (PanopticDataset), as quantiles."""
    from spatialflow.models.spatialflow import _training_target

    model.eval()
    high, low = model.matcher.high_threshold, model.matcher.low_threshold
    stats: dict[str, list[float]] = {"best_anchor_iou": [], "positive_anchors": [], "score_on_positives": [],
                                     "score_on_nearby_negatives": []}
    for i in range(len(dataset) if max_images is None else min(max_images, len(dataset))):
        image, target = dataset[i]
        batch, sizes = model._batch([image])
        target = _training_target(target, sizes[0])
        if len(target["boxes"]) == 0:
            continue
        _, cls, _, anchor_levels, _ = model._trunk(batch)
        scores = torch.cat(cls, dim=1)[0].sigmoid()
        iou = box_iou(target["boxes"], torch.cat(anchor_levels))
        for g, label in enumerate(target["labels"].tolist()):
            positive = iou[g] >= high
            nearby = (iou[g] > NEARBY_MIN_IOU) & (iou[g] < low)
            stats["best_anchor_iou"].append(float(iou[g].max()))
            stats["positive_anchors"].append(int(positive.sum()))
            on_positives = scores[positive, label] if positive.any() else scores[iou[g].argmax(), label][None]
            stats["score_on_positives"].append(float(on_positives.max()))
            stats["score_on_nearby_negatives"].append(float(scores[nearby, label].max()) if nearby.any() else 0.0)
    return {"objects": len(stats["best_anchor_iou"]), "quantiles": list(QUANTILES),
            **{k: [round(float(q), 3) for q in np.quantile(v, QUANTILES)] if v else [] for k, v in stats.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a model_final.pt or checkpoint of a training run")
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args(argv)

    from spatialflow.data.dataset import PanopticDataset
    from spatialflow.engine.trainer import load_trained_model

    model, cfg, _ = load_trained_model(args.checkpoint)
    split = cfg.data.val
    print(json.dumps(anchor_scores(model, PanopticDataset(split.json, split.png_dir, split.image_dir),
                                   args.max_images), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
