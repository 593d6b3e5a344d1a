"""``spatialflow bench model``: both models interleaved, each with its spread, the ratio of the minima."""

from __future__ import annotations

import json

import pytest

from spatialflow.cli import main


def test_bench_model_prints_both_sides_with_their_spread_and_the_ratio_of_minima(capsys):
    assert main(["bench", "model", "--device", "cpu", "--depth", "18", "--size", "32x48", "--repeats", "2",
                 "--num-things", "3", "--num-stuff", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["repeats"] == 2 and report["iters_per_repeat"] == 1 and report["amp"] is False
    for side in ("spatialflow", "retinanet"):
        figures = report[side]
        spread = figures["seconds_per_image_spread"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
        assert figures["seconds_per_image"] == spread["min"]
        assert figures["images_per_s"] == pytest.approx(1 / spread["min"])
        assert figures["flops"] > 0 and figures["params"] > 0
    assert report["time_ratio"] == pytest.approx(report["spatialflow"]["seconds_per_image"]
                                                 / report["retinanet"]["seconds_per_image"])
    per_repeat = report["time_ratio_per_repeat"]
    assert per_repeat["min"] <= per_repeat["median"] <= per_repeat["max"]
    assert report["within_target"] == (report["time_ratio"] <= 1.1 * report["flop_ratio"])
