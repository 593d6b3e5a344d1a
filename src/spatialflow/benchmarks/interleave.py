"""Side-by-side timing shared by every benchmark: sides interleaved (A B A B ...), minimum kept, spread shown.

On a shared machine a neighbour slows whatever runs while it is busy. Running each side once per round,
in turn, exposes all sides to the same neighbours; the minimum over rounds is the least-disturbed figure of
each side, and the ratio of the minima is the figure a benchmark reports. The per-round ratios (side A's
time in round r over side B's time in the same round) give the ratio's spread.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence


def time_interleaved(
    sides: Mapping[str, Callable[[], object]],
    rounds: int,
    iters: int = 1,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of every side, one entry per round; sides run in turn, ``iters`` calls each.

    ``sync`` runs before each clock reading (``torch.cuda.synchronize`` for GPU work).
    """
    if rounds < 1 or iters < 1:
        raise ValueError(f"rounds and iters must be >= 1, got {rounds} and {iters}")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, call in sides.items():
            sync()
            start = clock()
            for _ in range(iters):
                call()
            sync()
            times[name].append((clock() - start) / iters)
    return times


def spread(values: Sequence[float], digits: int | None = None) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``values`` (rounded to ``digits`` when given)."""
    figures = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    return figures if digits is None else {k: round(v, digits) for k, v in figures.items()}


def ratio(numerator: Sequence[float], denominator: Sequence[float], digits: int | None = None) -> dict:
    """Ratio of the minima and the spread of the per-round ratios (rounds paired by position)."""
    if len(numerator) != len(denominator):
        raise ValueError(f"{len(numerator)} rounds against {len(denominator)}")
    per_round = [a / b for a, b in zip(numerator, denominator)]
    value = min(numerator) / min(denominator)
    return {"ratio": value if digits is None else round(value, digits), "per_round": spread(per_round, digits)}


def rates(seconds: Sequence[float], items: float) -> list[float]:
    """Items per second of every round (``items`` processed per timed call)."""
    return [items / s for s in seconds]
