"""Training checkpoints: atomic writes, safe loading, fallback to the previous good file.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values::

    {"format": 1, "iteration": int, "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ... | None, "rng": [per-rank RNG states], "config": dict, "categories": list | None}

It is written to a temporary file and renamed (a crash never leaves half a file) and read with
``torch.load(weights_only=True)``: a file pulled from a shared remote is never unpickled as code.

Since format 1 files also carry ``"sha256"``: a digest of every tensor (its key path, dtype, shape and
bytes, in sorted key order), checked on load. A file whose tensor bytes changed is reported like a
truncated one (``CheckpointError``: the resume fallback skips it with a warning, predict prints one line).
Files written before the digest existed load without the check. Temporary files a killed save left in a
folder (``.checkpoint_*.tmp``) are removed by the next save into that folder.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spatialflow.errors import CheckpointError
from spatialflow.utils.atomic import atomic_open, remove_stale_temp_files

FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint_(\d{8})\.pt$")


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


def tensor_digest(state: Any) -> str:
    """sha256 over every tensor in ``state`` (nested dicts / lists), in sorted key order, with key paths,
    dtypes and shapes; the bytes are hashed as stored (CPU copy), so the device a file is loaded to does not
    matter. Plain Python values are not part of it."""
    digest = hashlib.sha256()

    def visit(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}|{value.dtype}|{tuple(value.shape)}\n".encode())
            if tensor.numel():
                digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                visit(value[key], f"{where}/{key!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{where}[{i}]")

    visit(state, "")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with its tensor digest atomically (temp file + rename); first remove the temporary
    files a killed save left in the folder."""
    path = Path(path)
    remove_stale_temp_files(path.parent, ".checkpoint_*.tmp")
    remove_stale_temp_files(path.parent, f".{path.name}.*.tmp")
    state = {"format": FORMAT_VERSION, **{k: v for k, v in state.items() if k != "sha256"}}
    state["sha256"] = tensor_digest({k: v for k, v in state.items() if k != "sha256"})
    with atomic_open(path, "wb") as handle:
        torch.save(state, handle)
    return path


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; ``CheckpointError`` naming the file if it is missing, truncated or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle opcode, forbidden global, ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a SpatialFlow checkpoint (no 'model' entry)")
    if not isinstance(state.get("format", FORMAT_VERSION), int) or state.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state['format']!r} is newer than this code "
                              f"({FORMAT_VERSION})")
    stored = state.pop("sha256", None)  # absent in files written before the digest existed
    if stored is not None and stored != tensor_digest(state):
        raise CheckpointError(f"{path}: corrupt checkpoint (its tensors do not match the stored sha256)")
    return state


def load_latest_checkpoint(directory: str | os.PathLike,
                           map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """Newest readable checkpoint in ``directory``; a bad one is reported (warning naming it) and skipped.

    Returns None when the folder has no checkpoint; raises ``CheckpointError`` when none is readable.
    """
    candidates = list_checkpoints(directory)
    errors = []
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; falling back to the previous checkpoint", stacklevel=2)
            errors.append(str(exc))
    if errors:
        raise CheckpointError(f"{directory}: no readable checkpoint: " + "; ".join(errors))
    return None


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
