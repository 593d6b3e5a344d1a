"""Progress of a training run: a tqdm bar on a terminal, a plain line now and then in a log file.

``mode``: ``bar`` (tqdm's bar, redrawn in place), ``lines`` (a line every ``every_seconds`` and at the end,
the same fields as the bar: label, percent, iterations, elapsed < ETA, rate, latest losses; right for log
files and for several processes writing to one terminal), ``off``, or ``auto`` (a bar where the stream is a
terminal, else lines).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

LINE_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} it [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
MODES = ("auto", "bar", "lines", "off")


class TrainingProgress:
    """Iterations ``initial`` .. ``total`` of a run labelled ``label`` (e.g. ``t2_baseline seed 1``)."""

    def __init__(self, total: int, initial: int, label: str, mode: str = "auto", every_seconds: float = 60.0,
                 file: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(MODES)}")
        self.file = file if file is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if self.file.isatty() else "lines"
        self.mode, self.total, self.initial, self.n, self.label = mode, total, initial, initial, label
        self.every_seconds, self.clock = every_seconds, clock
        self.started = self.last_line = clock()
        self.postfix, self.printed_n = "", initial
        self.bar = tqdm(total=total, initial=initial, desc=label, dynamic_ncols=True, file=self.file) \
            if mode == "bar" else None

    def set_postfix(self, values: dict[str, str]) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and self.clock() - self.last_line >= self.every_seconds:
            self._line()

    def line(self) -> str:
        """The current state as one line (what ``lines`` mode prints)."""
        return tqdm.format_meter(self.n, self.total, self.clock() - self.started, prefix=self.label,
                                 initial=self.initial, postfix=self.postfix or None, bar_format=LINE_FORMAT)

    def _line(self) -> None:
        self.last_line, self.printed_n = self.clock(), self.n
        print(self.line(), file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.n != self.printed_n:  # the end, unless just printed
            self._line()
