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
from spatialflow.data.panoptic_ids import rgb2id

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
        "train": {"lr": 0.01, "batch_size": 2, "unit": "epoch", "length": 1, "decay_steps": [1],
                  "warmup_iters": 2},
        "run": {"checkpoint_every": 2, "log_every": 1, "num_workers": 0, "device": "cpu"},
    }
    config_file = tmp_path / "row.yaml"
    config_file.write_text(yaml.safe_dump(config))

    # 4 images, batch 2 -> 2 iterations per epoch.
    assert main(["train", "--config", str(config_file)]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 2
    # Another run setting (log_every) is the same training: it resumes, here at its end.
    same = {**config, "run": {**config["run"], "log_every": 2}}
    (tmp_path / "same.yaml").write_text(yaml.safe_dump(same))
    assert main(["train", "--config", str(tmp_path / "same.yaml"), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["start_iteration"] == 2
    # Another training identity (2 epochs) is refused with one line, then moved aside with --replace.
    longer = {**config, "train": {**config["train"], "length": 2, "decay_steps": [2]}}
    (tmp_path / "longer.yaml").write_text(yaml.safe_dump(longer))
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert main(["train", "--config", str(tmp_path / "longer.yaml"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another training identity (train.decay_steps: [1] -> [2])" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before  # nothing touched
    with pytest.warns(UserWarning, match="moved it to"):
        assert main(["train", "--config", str(tmp_path / "longer.yaml"), "--resume", "--replace"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["start_iteration"], report["iterations"]) == (0, 4)
    assert set(report["last_losses"]) == {"cls", "reg", "mask", "stuff", "total"}
    moved = list(tmp_path.glob("run.replaced-*"))
    assert len(moved) == 1 and (moved[0] / "model_final.pt").is_file()
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


class _Interrupted(BaseException):
    """Stops a run the way Ctrl-C does."""


def test_workers_change_nothing_with_the_real_model_and_data(tmp_path):
    """The micro config: 0 and 2 data-loader workers train the same weights bit for bit, and so does a
    2-worker run interrupted after its checkpoint at iteration 3 (mid-epoch) and resumed."""
    from spatialflow.data.synthetic import generate_synthetic
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.engine.trainer import Callback, train

    torch.set_num_threads(1)
    split = generate_synthetic(tmp_path / "data", "shapes-coco", num_train=8, num_val=1, num_test=1, seed=0,
                               size=(64, 64))["train"]

    def config(name: str, workers: int):
        return load_experiment_config({
            "output_dir": str(tmp_path / name),
            "model": {"preset": "spatialflow", "depth": 18, "fpn_channels": 16, "stuff_channels": 16,
                      "stuff_groups": 4, "mask_channels": 16, "pretrained_backbone": False},
            "data": {"train": {"json": str(split.json_path), "png_dir": str(split.png_dir),
                               "image_dir": str(split.image_dir)},
                     "transforms": {"min_size": [48, 64], "max_size": 64, "flip": 0.5}},
            "train": {"optimizer": "adamw", "lr": 0.001, "batch_size": 1, "unit": "iteration", "length": 6,
                      "decay_steps": [5], "warmup_iters": 2},
            "run": {"checkpoint_every": 3, "keep_checkpoints": 10, "log_every": 1, "num_workers": workers,
                    "device": "cpu"}})

    class InterruptAt4(Callback):
        def on_log(self, iteration, metrics):
            if iteration == 4:
                raise _Interrupted

    none = train(config("w0", 0))
    two = train(config("w2", 2))
    with pytest.raises(_Interrupted):
        train(config("w2r", 2), [InterruptAt4()])
    resumed = train(config("w2r", 2), resume=True)
    assert resumed.start_iteration == 3
    weights = [ckpt.load_checkpoint(r.final_model)["model"] for r in (none, two, resumed)]
    for other in weights[1:]:
        assert all(torch.equal(weights[0][k], other[k]) for k in weights[0])
