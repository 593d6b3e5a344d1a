"""The package's errors. Each one says what is wrong and, for input files, which file."""

from __future__ import annotations

import os


class SpatialFlowError(Exception):
    """Base class: errors caused by input or configuration, reported without a traceback."""


class DataError(SpatialFlowError, ValueError):
    """Bad input data. The message always starts with the offending file."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # rebuilt from (path, problem) where it crosses processes (parallel seeds, runners)
        return type(self), (self.path, self.problem)


class ConfigError(SpatialFlowError, ValueError):
    """An invalid or contradictory configuration (e.g. a flow switched on without its sub-networks)."""


class CheckpointError(SpatialFlowError):
    """A checkpoint that cannot be read (missing, truncated, corrupt, incompatible)."""
