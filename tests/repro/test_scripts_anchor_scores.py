"""scripts/anchor_scores.py: per-object anchor statistics, checked on an untrained model where they are known."""

from __future__ import annotations

import math

import torch

from helpers.paths import load_script
from spatialflow.data.dataset import PanopticDataset
from spatialflow.data.synthetic import generate_synthetic
from spatialflow.models.config import model_config
from spatialflow.models.spatialflow import SpatialFlow

anchor_scores = load_script("anchor_scores")


def test_untrained_model_scores_every_anchor_at_the_focal_prior(tmp_path):
    """Before training every class logit is the prior bias -log(99) plus a tiny weight term, so both score
    rows sit at 0.01; the geometry rows follow from the anchors alone and are the same for any weights."""
    torch.manual_seed(0)
    split = generate_synthetic(tmp_path, "shapes-coco", num_train=1, num_val=2, num_test=1, size=(96, 128))["val"]
    data = PanopticDataset(split.json_path, split.png_dir, split.image_dir)
    cfg = model_config("baseline", depth=18, fpn_channels=32, stuff_channels=16, stuff_groups=4, mask_channels=16,
                       num_things=8, num_stuff=6, anchor_octave_base_scale=2.0)
    model = SpatialFlow(cfg)
    stats = anchor_scores.anchor_scores(model, data)

    objects = sum(1 for i in range(len(data)) for crowd in data[i][1]["iscrowd"].tolist() if not crowd)
    assert stats["objects"] == objects > 0
    prior = 1 / (1 + math.exp(math.log(99)))  # 0.01
    for key in ("score_on_positives", "score_on_nearby_negatives"):
        assert all(abs(q - prior) < 0.002 for q in stats[key]), (key, stats[key])
    assert stats["quantiles"] == [0.1, 0.25, 0.5, 0.75, 0.9]
    assert all(0 < q <= 1 for q in stats["best_anchor_iou"])
    assert stats["best_anchor_iou"] == sorted(stats["best_anchor_iou"])  # quantiles ascend
    assert stats["positive_anchors"][-1] >= 1  # most objects have an anchor of IoU >= 0.5
