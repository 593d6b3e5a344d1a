"""Training progress: a line every so often for log files, with the run's label, iterations and ETA."""

from __future__ import annotations

import io

import pytest

from spatialflow.engine.progress import TrainingProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(progress: TrainingProgress, clock: FakeClock, iterations: int, seconds_each: float = 0.25) -> None:
    for _ in range(iterations):
        clock.now += seconds_each
        progress.update()


def test_lines_mode_prints_every_interval_with_eta_and_losses():
    clock, out = FakeClock(), io.StringIO()
    progress = TrainingProgress(1200, 0, "t2_baseline seed 1", "lines", every_seconds=60, file=out, clock=clock)
    run(progress, clock, 239)  # 59.75 s: no line yet
    assert out.getvalue() == ""
    run(progress, clock, 1)  # 60 s, 240 iterations at 4 it/s: 960 left = 4 min
    assert out.getvalue() == "t2_baseline seed 1:  20% 240/1200 it [01:00<04:00,  4.00it/s]\n"
    progress.set_postfix({"total": "0.53", "lr": "0.0005"})
    run(progress, clock, 240)
    assert out.getvalue().splitlines()[1:] == [  # at 120 s: 720 left = 3 min
        "t2_baseline seed 1:  40% 480/1200 it [02:00<03:00,  4.00it/s, total=0.53, lr=0.0005]"]
    progress.close()  # just printed: no second line
    run(progress, clock, 20)
    progress.close()  # the closing line, at 125 s
    assert out.getvalue().splitlines()[2] == (
        "t2_baseline seed 1:  42% 500/1200 it [02:05<02:55,  4.00it/s, total=0.53, lr=0.0005]")


def test_a_resumed_run_counts_its_rate_from_where_it_resumed():
    clock, out = FakeClock(), io.StringIO()
    progress = TrainingProgress(1200, 600, "t3_baseline seed 0", "lines", every_seconds=60, file=out, clock=clock)
    run(progress, clock, 240)  # 240 iterations in 60 s since the resume: 360 left = 1 min 30 s
    assert out.getvalue() == "t3_baseline seed 0:  70% 840/1200 it [01:00<01:30,  4.00it/s]\n"


def test_auto_mode_writes_lines_to_a_file_and_nothing_when_off():
    out = io.StringIO()  # not a terminal
    assert TrainingProgress(10, 0, "x", "auto", file=out).mode == "lines"
    off = TrainingProgress(10, 0, "x", "off", file=out)
    off.update(10)
    off.close()
    assert out.getvalue() == ""
    with pytest.raises(ValueError, match="progress mode 'loud'"):
        TrainingProgress(10, 0, "x", "loud", file=out)
