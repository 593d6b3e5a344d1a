"""Training checkpoints: atomic writes, safe loading, fallback to the previous good file.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values::

    {"format": 2, "iteration": int, "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ... | None, "rng": [per-rank RNG states], "config": dict, "categories": list | None,
     "sha256": str}

It is written to a temporary file and renamed (a crash never leaves half a file) and read with
``torch.load(weights_only=True)``: a file pulled from a shared remote is never unpickled as code, and a file
that holds Python objects is refused, not run.

``sha256`` is a digest of *everything else in the file*: every tensor (key path, dtype, shape, bytes) and
every plain value (key path, type, ``repr``), in sorted key order (:func:`state_digest`). It is checked on
load, so a changed byte anywhere, an edited ``iteration`` included, makes the file corrupt
(``CheckpointError``: the resume fallback skips it, predict prints one line). A file without the digest, or
with the tensors-only digest of format 1, is refused: only files this code wrote are loaded. (Pretrained
backbone weights, torchvision's ImageNet files or the pretrain stage's, are another format, read by
:mod:`spatialflow.models.backbone`, and carry no digest.)

Pruning (:func:`prune_checkpoints`) first makes sure the newest checkpoint loads; a newer file that does not
load is moved aside (``<name>.unreadable-<time>``), never trusted and never deleted, so the last good
checkpoint is never the one removed. Temporary files a killed save left in a folder
(``.checkpoint_*.tmp``) are removed by the next save into that folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import random
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialflow.errors import CheckpointError
from spatialflow.utils.atomic import atomic_open, remove_stale_temp_files

FORMAT_VERSION = 2  # 2: the digest covers plain values too (format 1 hashed the tensors only)
_NAME = re.compile(r"^checkpoint_(\d{8})\.pt$")
UNREADABLE_MARK = ".unreadable-"


def checkpoint_path(directory: str | os.PathLike, iteration: int) -> Path:
    return Path(directory) / f"checkpoint_{iteration:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory``, oldest first (by the iteration in the name)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def state_digest(state: Any) -> str:
    """sha256 over everything in ``state`` (nested dicts / lists / tuples), in sorted key order, with key
    paths: tensors by dtype, shape and bytes (a CPU copy, so the device a file is loaded to does not
    matter), every other value by its type and ``repr``."""
    digest = hashlib.sha256()

    def visit(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}|tensor|{value.dtype}|{tuple(value.shape)}\n".encode())
            if tensor.numel():
                digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"{where}|dict|{len(value)}\n".encode())
            for key in sorted(value, key=repr):
                visit(value[key], f"{where}/{key!r}")
        elif isinstance(value, (list, tuple)):
            digest.update(f"{where}|{type(value).__name__}|{len(value)}\n".encode())
            for i, item in enumerate(value):
                visit(item, f"{where}[{i}]")
        else:
            digest.update(f"{where}|{type(value).__name__}|{value!r}\n".encode("utf-8", "surrogatepass"))

    visit(state, "")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with its digest atomically (temp file + rename); first remove the temporary files a
    killed save left in the folder. A full disk (or any other OS error) is a ``CheckpointError`` naming the
    file; the files already there are left as they were."""
    path = Path(path)
    remove_stale_temp_files(path.parent, ".checkpoint_*.tmp")
    remove_stale_temp_files(path.parent, f".{path.name}.*.tmp")
    state = {**{k: v for k, v in state.items() if k not in ("format", "sha256")}, "format": FORMAT_VERSION}
    state["sha256"] = state_digest(state)
    failure: list[OSError] = []
    try:
        with atomic_open(path, "wb") as handle:
            torch.save(state, _WriteErrors(handle, failure))
    except (OSError, RuntimeError) as exc:
        os_error = exc if isinstance(exc, OSError) else (failure[0] if failure else None)
        if os_error is None:
            raise
        reason = os.strerror(os_error.errno) if os_error.errno else str(os_error)
        raise CheckpointError(f"{path}: cannot write the checkpoint: {reason[:1].lower()}{reason[1:]}; "
                              "the checkpoints already written are left as they were") from None
    return path


class _WriteErrors:
    """A binary file for ``torch.save`` that remembers the OS error of a failed write: torch's writer turns it
    into a RuntimeError ("file write failed") that no longer says why."""

    def __init__(self, handle: Any, failure: list[OSError]) -> None:
        self.handle, self.failure = handle, failure

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.failure.append(exc)
            raise

    def flush(self) -> None:
        self.handle.flush()


def move_aside(path: str | os.PathLike, problem: str) -> Path:
    """Rename a checkpoint that does not load to ``<name>.unreadable-<UTC time>`` (kept for a person to look
    at, no longer listed as a checkpoint) and warn naming both."""
    path = Path(path)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}{UNREADABLE_MARK}{stamp}")
    path.rename(target)
    warnings.warn(f"{problem}; moved it aside to {target.name} (not deleted)", stacklevel=3)
    return target


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, counted from the newest one that loads.

    Checkpoints newer than that one (truncated, corrupt) are moved aside, not counted and not deleted; when
    no checkpoint loads, nothing is touched. The newest file is read back whole, so this costs one load.
    """
    found = list_checkpoints(directory)
    for newest in range(len(found) - 1, -1, -1):
        try:
            load_checkpoint(found[newest])
        except CheckpointError:
            continue
        for bad in found[newest + 1:]:
            move_aside(bad, f"{bad}: does not load")
        for old in found[: newest + 1][:-keep]:
            old.unlink(missing_ok=True)
        return


def _load_failure(exc: Exception) -> str:
    """One line for why ``torch.load(weights_only=True)`` failed (torch's own text is many lines of advice)."""
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            return (f"refused: it holds Python objects ({found.group(1)}) that only an unsafe load would "
                    "construct or run; checkpoints are loaded with weights_only=True and never unpickled")
        return "unreadable checkpoint (not a PyTorch checkpoint: invalid pickle data)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = first.split(". ")[0].rstrip(".")  # torch appends paragraphs of advice after the first sentence
    return f"unreadable checkpoint ({type(exc).__name__}: {first})"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; ``CheckpointError`` naming the file if it is missing, not a regular file,
    truncated, corrupt, without digest, or holds Python objects."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise CheckpointError(f"{path}: not a regular file ({kind}); expected a checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle opcode, forbidden global, ...
        raise CheckpointError(f"{path}: {_load_failure(exc)}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a SpatialFlow checkpoint (no 'model' entry)")
    version = state.get("format")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: not a SpatialFlow checkpoint (no format number)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this code ({FORMAT_VERSION})")
    stored = state.pop("sha256", None)
    if version < FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is older than this code's "
                              f"({FORMAT_VERSION}): its digest does not cover every value; retrain it")
    if stored is None:
        raise CheckpointError(f"{path}: has no sha256 digest (not written by spatialflow, or edited); refused")
    if stored != state_digest(state):
        raise CheckpointError(f"{path}: corrupt checkpoint (its content does not match the stored sha256)")
    return state


def load_latest_checkpoint(directory: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                           move_bad_aside: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """Newest readable checkpoint in ``directory``; a bad one is reported (warning naming it) and skipped.

    With ``move_bad_aside`` (the process that owns the folder), the bad files newer than the one returned
    are moved aside, so they are neither trusted nor counted when checkpoints are pruned later. Returns None
    when the folder has no checkpoint; raises ``CheckpointError`` when none is readable (nothing moved).
    """
    candidates = list_checkpoints(directory)
    errors = []
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; falling back to the previous checkpoint", stacklevel=2)
            errors.append(exc)
            continue
        if move_bad_aside:
            for bad in candidates[candidates.index(path) + 1:]:
                move_aside(bad, f"{bad}: does not load")
        return path, state
    if errors:
        raise CheckpointError(f"{directory}: no readable checkpoint: " + "; ".join(map(str, errors)))
    return None


def first_mismatch(own: dict[str, torch.Tensor], weights: dict[str, Any]) -> str | None:
    """The first difference between a model's ``state_dict`` and a checkpoint's weights (missing or extra
    entry, or another shape), as one phrase; None when the weights fit."""
    for key in own:
        if key not in weights:
            return f"it has no '{key}'"
        if not isinstance(weights[key], torch.Tensor) or weights[key].shape != own[key].shape:
            theirs = tuple(weights[key].shape) if isinstance(weights[key], torch.Tensor) else type(weights[key])
            return f"'{key}' is {theirs} there, {tuple(own[key].shape)} in this model"
    extra = next((key for key in weights if key not in own), None)
    return None if extra is None else f"it has '{extra}', which this model has not"


def load_model_state(model: torch.nn.Module, weights: dict[str, Any], path: str | os.PathLike) -> None:
    """``model.load_state_dict(weights)``, or one ``CheckpointError`` line when the checkpoint at ``path``
    holds another model (instead of torch's line per mismatching parameter)."""
    problem = first_mismatch(model.state_dict(), weights)
    if problem is not None:
        raise CheckpointError(f"{path}: holds another model than the config builds ({problem})")
    model.load_state_dict(weights)


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> list[str]:
    """Initialise ``model`` from a checkpoint's weights, skipping entries whose name or shape differs
    (e.g. class-dependent layers of a COCO model loaded into a Cityscapes model). Returns skipped names."""
    weights = load_checkpoint(path)["model"]
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch CPU and CUDA as plain values (weights_only-loadable)."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
