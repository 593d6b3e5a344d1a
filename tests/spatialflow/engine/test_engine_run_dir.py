"""A run folder is never thrown away: typed config errors before any disk access, identity checks, locking."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.toy import toy_config, toy_factories
from spatialflow.cli import main
from spatialflow.engine import run_dir
from spatialflow.engine.config import load_experiment_config, training_identity
from spatialflow.engine.trainer import train
from spatialflow.errors import CheckpointError, ConfigError

ROW = {"model": {"preset": "baseline", "depth": 18}, "train": {"lr": 0.01, "batch_size": 2},
       "data": {"transforms": {"min_size": 64, "max_size": 96}}}


def _with(section: str, **values) -> dict:
    return {**ROW, section: {**ROW.get(section, {}), **values}}


@pytest.mark.parametrize(("config", "message"), [
    (_with("train", lr=-1), "train.lr: Input should be greater than 0, got -1"),
    (_with("train", lr=0), "train.lr: Input should be greater than 0, got 0"),
    (_with("train", batch_size=4.5), "train.batch_size: Input should be a valid integer, got 4.5"),
    (_with("train", batch_size="four"), "train.batch_size: Input should be a valid integer, got 'four'"),
    (_with("train", gamma=0), "train.gamma: Input should be greater than 0, got 0"),
    (_with("train", gamma=1.5), "train.gamma: Input should be less than or equal to 1, got 1.5"),
    (_with("train", optimizer="adam"), "train.optimizer: Input should be 'sgd' or 'adamw', got 'adam'"),
    (_with("train", decay_steps=[30]), "train.decay_steps: must be increasing and within 1..length=20"),
    (_with("train", epochs=3), "train.epochs: unknown key"),
    (_with("train", log_every=5), "train.log_every: is a run setting (it never changes the weights); put it "
                                  "under 'run:'"),
    (_with("data", transforms={"min_size": 0}), "data.transforms.min_size"),
    (_with("data", transforms={"flip": 1.5}), "data.transforms.flip: Input should be less than or equal to 1, "
                                              "got 1.5"),
    (_with("run", checkpoint_every=0), "run.checkpoint_every: Input should be greater than or equal to 1, got 0"),
    (_with("run", device="tpu"), "run.device: Input should be 'auto', 'cpu' or 'cuda', got 'tpu'"),
    (_with("train", lr=float("inf")), "train.lr: Input should be a finite number, got inf"),
    (_with("train", lr=float("nan")), "train.lr: Input should be a finite number, got nan"),
    (_with("train", weight_decay=float("inf")), "train.weight_decay: Input should be a finite number, got inf"),
    (_with("train", unit="iteration", length=100, decay_steps=[], warmup_iters=10**9),
     "train.warmup_iters: 1000000000 is longer than the schedule (length 100 iterations)"),
    (_with("train", seed=2**64), "train.seed: Input should be less than or equal to 4294967295"),
    (_with("data", transforms={"min_size": 1000000, "max_size": 1000000}),
     "data.transforms.min_size: Input should be less than or equal to 4096, got 1000000"),
    (_with("data", transforms={"max_size": 1000000}),
     "data.transforms.max_size: Input should be less than or equal to 8192, got 1000000"),
    (_with("data", transforms={"min_size": [800, 5000]}),
     "data.transforms.min_size.1: Input should be less than or equal to 4096, got 5000"),
    (_with("data", transforms={"min_size_range": [400, 40000]}),
     "data.transforms.min_size_range.1: Input should be less than or equal to 4096, got 40000"),
    (_with("data", transforms={"scale_crop": {"scale": [0.5, 1000.0], "crop": [512, 1024]}}),
     "data.transforms.scale_crop.scale.1: Input should be less than or equal to 4, got 1000.0"),
    (_with("data", transforms={"scale_crop": {"scale": [0.5, 2.0], "crop": [512, 10**6]}}),
     "data.transforms.scale_crop.crop.1: Input should be less than or equal to 8192, got 1000000"),
    ({**ROW, "output_dir": ""}, "output_dir: is empty; give the run's own folder, e.g. outputs/run"),
    ({**ROW, "output_dir": "."}, "output_dir: '.' names no folder of its own"),
    ({**ROW, "output_dir": "runs/.."}, "output_dir: 'runs/..' names no folder of its own"),
    ({**ROW, "name": "row\udcff"}, "name: not valid UTF-8 text ('\\udcff' at position 3); file names and text in "
                                   "a config must be UTF-8"),
    (_with("data", train={"json": "a\ud800.json", "image_dir": "i"}),
     "data.train.json: not valid UTF-8 text ('\\ud800' at position 1)"),
    ({**ROW, "model": {"preset": "basline"}}, "unknown model preset 'basline'"),
    ({**ROW, "model": {"preset": "baseline", "stuff_loss_weight": -0.5}},
     "model.stuff_loss_weight: must be a finite number >= 0, got -0.5"),
    ({**ROW, "model": {"preset": "baseline", "fpn_channels": 64.0}},
     "model.fpn_channels: must be an integer >= 1, got 64.0"),
])
def test_every_bad_value_is_one_line_naming_key_and_value(config, message):
    with pytest.raises(ConfigError) as info:
        load_experiment_config(config)
    text = str(info.value)
    assert "\n" not in text and message in text, text


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_preset_typo_leaves_the_existing_run_byte_identical(tmp_path, capsys):
    run = tmp_path / "run"
    train(toy_config(run, length=4, checkpoint_every=2), **toy_factories())
    before = _snapshot(run)
    capsys.readouterr()  # the first run's progress line
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({**ROW, "model": {"preset": "basline"}, "output_dir": str(run)}))
    assert main(["train", "--config", str(config), "--resume", "--replace"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model preset 'basline'" in err[0]
    assert _snapshot(run) == before and not list(tmp_path.glob("run.replaced-*"))


def test_a_run_setting_resumes_and_another_identity_is_refused_then_moved_aside(tmp_path):
    run = tmp_path / "run"
    first = train(toy_config(run, length=6, checkpoint_every=3), **toy_factories())
    # log / checkpoint frequency are run settings: the same training, it resumes (here: at its end)
    again = train(toy_config(run, length=6, checkpoint_every=2, log_every=1), resume=True, **toy_factories())
    assert (again.start_iteration, again.iterations) == (6, 6)
    before = _snapshot(run)
    with pytest.raises(ConfigError, match=r"another training identity \(train.lr: 0.1 -> 0.05\)"):
        train(toy_config(run, length=6, lr=0.05), resume=True, **toy_factories())
    assert _snapshot(run) == before
    with pytest.warns(UserWarning, match="moved it to"):
        fresh = train(toy_config(run, length=6, lr=0.05), resume=True, replace=True, **toy_factories())
    assert fresh.start_iteration == 0
    moved = list(tmp_path.glob("run.replaced-*"))
    assert len(moved) == 1
    def files(snapshot: dict) -> dict:
        return {k: v for k, v in snapshot.items() if k != "REPLACED.txt" and not k.startswith(".run.lock")}

    assert files(_snapshot(moved[0])) == files(before)
    assert first.final_model == run / "model_final.pt"  # now the new run's; the old one moved intact
    assert run_dir.replaced_runs(tmp_path) == moved


def test_a_failed_start_leaves_no_identity_so_the_corrected_config_runs(tmp_path):
    run = tmp_path / "run"
    bad = tmp_path / "coco.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="coco.pt: unreadable checkpoint"):
        train(toy_config(run, length=2, init_checkpoint=str(bad)), **toy_factories())
    assert not (run / "identity.json").exists()
    good = train(toy_config(tmp_path / "source", length=2), **toy_factories()).final_model
    result = train(toy_config(run, length=2, init_checkpoint=str(good)), **toy_factories())
    assert result.iterations == 2
    assert run_dir.stored_identity(run)["train"]["init_checkpoint"] == str(good)


def test_a_folder_where_no_lock_can_be_made_says_so(tmp_path):
    with pytest.raises(ConfigError) as info:
        train(toy_config("/proc/self", length=2), **toy_factories())
    assert str(info.value) == ("/proc/self: cannot write the run folder there (/proc/self/.run.lock: No such file "
                               "or directory); choose another output_dir")


def test_identity_holds_config_input_digests_and_training_code(tmp_path):
    cfg = toy_config(tmp_path / "run")
    identity = run_dir.run_identity(cfg)
    assert {k: identity[k] for k in ("model", "data", "train")} == training_identity(cfg)
    assert "run" not in identity and len(identity["code"]) == 64
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    cfg = load_experiment_config({**ROW, "model": {"preset": "baseline", "pretrained_backbone": True,
                                                   "backbone_weights": str(weights)}})
    first = run_dir.run_identity(cfg)["inputs"]["model.backbone_weights"]
    weights.write_bytes(b"two")  # same path, other content: another training
    assert run_dir.run_identity(cfg)["inputs"]["model.backbone_weights"] != first


def test_training_code_matches_the_train_stages_of_dvc_yaml(repo_root):
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for name in ("table1", "train", "train_pretrained"):
        deps = stages[name]["do"]["deps"]
        assert set(run_dir.TRAINING_CODE) <= set(deps), name


def test_a_second_training_on_the_same_folder_gets_one_line_naming_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spatialflow.engine.run_dir import lock_run_dir\n"
         "with lock_run_dir(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError) as info:
            train(toy_config(run), **toy_factories())
        message = str(info.value)
        assert "\n" not in message and f"another training run holds this folder (pid {holder.pid} on " in message
        config = tmp_path / "row.yaml"
        config.write_text(yaml.safe_dump({**ROW, "output_dir": str(run)}))
        assert main(["train", "--config", str(config)]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert not (run / "checkpoints").exists()  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    result = train(toy_config(run, length=2), **toy_factories())  # the lock is free again
    assert result.iterations == 2


def test_clean_replaced_lists_and_prints_the_removal_command_but_deletes_nothing(tmp_path, capsys):
    kept = tmp_path / "row" / "seed0"
    kept.mkdir(parents=True)
    old = tmp_path / "row" / "seed0.replaced-20260101T000000000000Z"
    old.mkdir()
    (old / "model_final.pt").write_bytes(b"x" * 10)
    assert main(["clean-replaced", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(old) in out and "nothing was removed" in out and f"rm -rf {old}" in out
    assert old.is_dir() and kept.is_dir()
