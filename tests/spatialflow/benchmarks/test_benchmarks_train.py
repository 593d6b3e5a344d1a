"""``spatialflow bench train``: interleaved sides, min / median / max per side, ratios to the ResNet floor."""

from __future__ import annotations

import json

import pytest

from spatialflow.cli import main


def test_bench_train_prints_each_side_with_its_spread_and_the_ratios(capsys):
    assert main(["bench", "train", "--repeats", "2", "--iters", "1", "--size", "64x64", "--batch", "2",
                 "--fpn-channels", "16", "--stuff-channels", "16", "--stuff-groups", "4", "--mask-channels", "16",
                 "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    sides = report["seconds_per_iteration"]
    assert set(sides) == {"resnet_floor", "baseline", "spatialflow"}
    for spread in sides.values():
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    floor = sides["resnet_floor"]["min"]
    for preset in ("baseline", "spatialflow"):
        # the ratio comes from the unrounded minima, the printed spread is rounded to 4 decimals
        assert report["ratio_to_floor"][preset] == pytest.approx(sides[preset]["min"] / floor, rel=0.02, abs=0.01)
    assert report["repeats"] == 2 and report["targets"] == {"baseline": 2.5, "spatialflow": 4.0}


def test_bench_train_rejects_a_zero_batch_in_one_line(capsys):
    try:
        code = main(["bench", "train", "--batch", "0"])
    except SystemExit as exc:  # argparse's own exit
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--batch" in err[0] and "expected an integer >= 1" in err[0]
