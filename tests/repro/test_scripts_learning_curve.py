"""scripts/learning_curve.py: its command-line overrides and its outputs (the training itself is the trainer's)."""

from __future__ import annotations

import csv

import pytest

from helpers.paths import load_script

learning_curve = load_script("learning_curve")


def test_key_values_are_parsed_as_yaml():
    assert learning_curve._key_values(["lr=0.001", "decay_steps=[200, 300]", "optimizer=sgd"], "--train") == {
        "lr": 0.001, "decay_steps": [200, 300], "optimizer": "sgd"}


@pytest.mark.parametrize("item", ["lr", "=3"])
def test_a_key_value_without_key_or_value_is_one_line_naming_the_flag(item):
    with pytest.raises(SystemExit, match=rf"--model '{item}': expected KEY=VALUE"):
        learning_curve._key_values([item], "--model")


def test_curve_csv_and_figure_are_written(tmp_path):
    points = [{"iteration": 200, "pq": 30.0, "pq_th": 0.0, "pq_st": 70.0},
              {"iteration": 400, "pq": 45.5, "pq_th": 20.25, "pq_st": 80.0}]
    learning_curve.write_curve(points, tmp_path / "curve", title="t")
    with open(tmp_path / "curve.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["iteration"], r["pq_th"]) for r in rows] == [("200", "0.0"), ("400", "20.25")]
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert learning_curve.main(["--out", str(tmp_path / "both"), "--plot", f"a={tmp_path / 'curve.csv'}"]) == 0
    assert (tmp_path / "both.png").stat().st_size > 0


def test_plot_of_a_missing_csv_is_one_line():
    with pytest.raises(SystemExit, match="expected LABEL=CSV with an existing CSV file"):
        learning_curve.main(["--plot", "a=/nonexistent.csv"])


@pytest.mark.parametrize(("argv", "expected"), [([], 40.0), (["--floor", "20"], 20.0)])
def test_the_plots_dotted_line_is_the_rules_floor(tmp_path, monkeypatch, argv, expected):
    from matplotlib.axes import Axes

    drawn = []
    original = Axes.axhline
    monkeypatch.setattr(Axes, "axhline", lambda ax, y=0, *a, **k: drawn.append(y) or original(ax, y, *a, **k))
    (tmp_path / "c.csv").write_text("iteration,pq,pq_th,pq_st\n3600,70.66,53.12,94.05\n")
    assert learning_curve.main(["--out", str(tmp_path / "f"), "--plot", f"a={tmp_path / 'c.csv'}", *argv]) == 0
    assert drawn == [expected]
