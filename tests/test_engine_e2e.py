"""The real SpatialFlow model through `spatialflow train` (+ --resume) and `spatialflow predict` on
synthetic COCO-panoptic data: the CLI path the pipeline shares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from spatialflow.cli import main
from spatialflow.engine import checkpoint as ckpt
from spatialflow.panoptic.ids import rgb2id

MODEL = {"preset": "spatialflow", "depth": 18, "fpn_channels": 32, "stuff_channels": 32, "stuff_groups": 8,
         "mask_channels": 32}


def test_train_resume_and_predict_with_the_real_model(tmp_path, capsys):
    from spatialflow.data.synthetic import generate_synthetic

    torch.set_num_threads(1)
    splits = generate_synthetic(tmp_path / "data", "shapes-coco", num_train=4, num_val=2, num_test=1, seed=0,
                                size=(64, 64))
    train_split, val = splits["train"], splits["val"]
    config = {
        "name": "e2e", "output_dir": str(tmp_path / "run"), "model": MODEL,
        "data": {"train": {"json": str(train_split.json_path), "png_dir": str(train_split.png_dir),
                           "image_dir": str(train_split.image_dir)},
                 "transforms": {"min_size": 64, "max_size": 64, "flip": 0.5}},
        "train": {"lr": 0.01, "batch_size": 2, "unit": "epoch", "length": 2, "decay_steps": [2],
                  "warmup_iters": 2, "checkpoint_every": 2, "log_every": 1, "num_workers": 0, "device": "cpu"},
    }
    config_file = tmp_path / "row.yaml"
    config_file.write_text(yaml.safe_dump(config))

    # 4 images, batch 2 -> 2 iterations per epoch; 1 epoch first (output_dir override), then resume to 2.
    one_epoch = {**config, "train": {**config["train"], "length": 1, "decay_steps": [1]}}
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(one_epoch))
    assert main(["train", "--config", str(tmp_path / "one.yaml")]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 2
    with pytest.warns(UserWarning, match="different config"):  # the length changed from 1 to 2 epochs
        assert main(["train", "--config", str(config_file), "--resume"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["start_iteration"], report["iterations"]) == (2, 4)
    assert set(report["last_losses"]) == {"cls", "reg", "mask", "stuff", "total"}
    state = ckpt.load_checkpoint(tmp_path / "run" / "model_final.pt")
    assert state["iteration"] == 4 and [c["id"] for c in state["categories"]][:1] == [1]

    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "model_final.pt"), "--images",
                 str(val.image_dir), "--image-json", str(val.json_path), "--gt-dir", str(val.png_dir),
                 "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 2 and set(metrics) >= {"All", "Things", "Stuff"}
    assert 0.0 <= metrics["All"]["pq"] <= 100.0
    pred = json.loads((out / "panoptic_pred.json").read_text())
    assert len(pred["annotations"]) == 2
    for ann in pred["annotations"]:  # every PNG id is a listed segment (void 0 aside)
        ids = rgb2id(np.asarray(Image.open(out / "panoptic_pred" / ann["file_name"]).convert("RGB")))
        assert set(np.unique(ids)) - {0} == {s["id"] for s in ann["segments_info"]}
