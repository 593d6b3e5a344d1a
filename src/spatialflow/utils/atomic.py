"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash in the middle of a write leaves the previous file intact, never a half-written one. The temporary
file is created with mode 0666 minus the umask (0644 under the usual umask 022), like any ``open(path, "w")``,
so outputs are as readable by teammates as the user's other files. Temporary files are named
``.<name>.<random>.tmp``; ``remove_stale_temp_files`` deletes those a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _create_exclusive(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_EXCL, 0o666)  # the umask applies, as for open()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. ``handle.name`` is the
    temporary file's path (e.g. to read back what was written before the rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            handle = open(tmp, mode, opener=_create_exclusive, **kwargs)  # noqa: SIM115 - closed below
            break
        except FileExistsError:
            continue
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(directory: str | os.PathLike, pattern: str) -> list[Path]:
    """Delete the temporary files (``pattern``, e.g. ``.checkpoint_*.tmp``) a killed writer left in ``directory``.

    Call it only where no other process is writing into ``directory`` at the same time.
    """
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for stale in directory.glob(pattern):
            if stale.is_file() and stale.name.startswith(".") and stale.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                removed.append(stale)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_save_image(path: str | os.PathLike, image: Any, format: str = "PNG") -> None:
    """Save a PIL image atomically (format given explicitly: the temp name has no extension)."""
    with atomic_open(path, "wb") as handle:
        image.save(handle, format=format)
