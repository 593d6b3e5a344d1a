"""Reading an input file whole, with the package's one-line errors for the two usual mistakes."""

from __future__ import annotations

import os

from spatialflow.errors import DataError


def read_input_bytes(path: str | os.PathLike, kind: str) -> bytes:
    """The bytes of ``path``; DataError naming it when it is missing (``<kind> not found``) or a folder
    (``is a folder; expected a <kind>``). ``kind``: what it should be, e.g. "JSON file", "panoptic PNG"."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(path, f"{kind} not found") from None
    except IsADirectoryError:
        raise DataError(path, f"is a folder; expected a {kind}") from None
