"""The shared side-by-side timing of the benchmarks, on a fake clock and fake workloads (nothing is timed)."""

from __future__ import annotations

import argparse
import json

import pytest

from spatialflow.benchmarks import pq as pq_benchmark
from spatialflow.benchmarks.interleave import rates, ratio, spread, time_interleaved


class FakeClock:
    """A clock that each workload advances by its own fake duration; records the order of the calls."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def workload(self, name: str, durations: list[float]):
        remaining = list(durations)

        def call() -> None:
            self.calls.append(name)
            self.now += remaining.pop(0)

        return call


def test_sides_run_interleaved_and_each_round_is_timed_per_call():
    clock = FakeClock()
    # A takes 2, 3 | 1, 1 | 4, 2 s per call over 3 rounds of 2 calls; B 1, 1 | 2, 2 | 1, 3.
    sides = {"A": clock.workload("A", [2, 3, 1, 1, 4, 2]), "B": clock.workload("B", [1, 1, 2, 2, 1, 3])}
    times = time_interleaved(sides, rounds=3, iters=2, clock=clock)
    assert clock.calls == ["A", "A", "B", "B"] * 3  # A B A B ..., never all of A first
    assert times == {"A": [2.5, 1.0, 3.0], "B": [1.0, 2.0, 2.0]}


def test_sync_runs_around_every_timed_side():
    clock = FakeClock()
    synced: list[int] = []
    time_interleaved({"A": clock.workload("A", [1, 1])}, rounds=2, clock=clock,
                     sync=lambda: synced.append(len(clock.calls)))
    assert synced == [0, 1, 1, 2]  # before and after each round's calls


def test_spread_and_ratio_of_minima_by_hand():
    a, b = [2.5, 1.0, 3.0], [1.0, 2.0, 2.0]
    assert spread(a) == {"min": 1.0, "median": 2.5, "max": 3.0}
    assert spread([1.0, 2.0, 4.0, 8.0]) == {"min": 1.0, "median": 3.0, "max": 8.0}
    # min(a) / min(b) = 1 / 1; per round 2.5 / 1, 1 / 2, 3 / 2 -> 2.5, 0.5, 1.5
    assert ratio(a, b) == {"ratio": 1.0, "per_round": {"min": 0.5, "median": 1.5, "max": 2.5}}
    assert ratio([1.0, 3.0], [3.0, 3.0], digits=2) == {"ratio": 0.33,
                                                       "per_round": {"min": 0.33, "median": 0.67, "max": 1.0}}
    assert rates([0.5, 2.0], items=10) == [20.0, 5.0]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="rounds and iters"):
        time_interleaved({"A": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="2 rounds against 1"):
        ratio([1.0, 2.0], [1.0])


def test_bench_pq_reports_interleaved_sides_and_ratios(tmp_path, capsys, monkeypatch):
    """Fake timings through ``bench pq``: images/s from the best round, ratios of the best rounds."""
    seconds = {"ours_1_worker": [4.0, 2.0], "ours_all_workers": [2.0, 1.0], "hotcoco": [0.5, 0.4]}
    monkeypatch.setattr(pq_benchmark, "time_interleaved", lambda sides, rounds: (
        {name: seconds[name] for name in sides}))
    parser = argparse.ArgumentParser()
    pq_benchmark.add_arguments(parser)
    assert pq_benchmark.run(parser.parse_args(["--images", "2", "--size", "16x16", "--repeats", "2"])) == 0
    figures = json.loads(capsys.readouterr().out)
    # 2 images: best rounds 2.0 s, 1.0 s, 0.4 s -> 1, 2, 5 images/s
    assert figures["ours_1_worker_images_per_s"] == 1.0
    assert figures["ours_all_workers_images_per_s"] == 2.0
    assert figures["hotcoco_images_per_s"] == 5.0
    assert figures["hotcoco_images_per_s_spread"] == {"min": 4.0, "median": 4.5, "max": 5.0}
    # ours / hotcoco in speed = hotcoco's time / ours: 0.4 / 1.0; per round 0.5 / 2, 0.4 / 1
    assert figures["ratio_ours_all_workers_to_hotcoco"] == pytest.approx(0.4)
    assert figures["ratio_ours_all_workers_to_hotcoco_per_repeat"] == pytest.approx(
        {"min": 0.25, "median": 0.325, "max": 0.4})
    assert figures["ratio_ours_1_worker_to_hotcoco"] == pytest.approx(0.2)
    assert figures["max_abs_difference_pq_all"] < 1e-9


def test_bench_pq_profile_prints_every_stage(capsys):
    parser = argparse.ArgumentParser()
    pq_benchmark.add_arguments(parser)
    assert pq_benchmark.run(parser.parse_args(["--images", "2", "--size", "16x24", "--repeats", "1",
                                               "--profile"])) == 0
    stages = json.loads(capsys.readouterr().out)["ms_per_image_best_round"]
    parts = ("read", "png_decode", "segments_info", "pairing", "bookkeeping")
    assert set(stages) == {*parts, "total"}
    assert all(stages[part] >= 0 for part in parts)
    assert stages["total"] == pytest.approx(sum(stages[part] for part in parts))
