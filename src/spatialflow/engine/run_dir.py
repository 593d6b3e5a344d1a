"""A training run's folder: locked while written, never deleted, moved aside when its identity changes.

A run folder (``output_dir``) holds ``config.yaml``, ``checkpoints/`` and ``model_final.pt``. What it
holds is worth hours of GPU time, so the code never removes one:

- :func:`lock_run_dir` takes an exclusive lock (``filelock``) for the whole training; a second process on
  the same folder gets one line naming the holder (pid, host, start time).
- :func:`check_identity` compares the training identity stored in the folder (``identity.json``: the
  config's model / data / train sections, digests of the files they name, and a digest of the training
  code, see :data:`TRAINING_CODE`) with the requested one. A
  different *run setting* (log or checkpoint frequency, workers, device) resumes normally. A different
  *training identity* is refused with a one-line message, or, when the caller asks for it (the pipeline
  does), the folder is moved aside to ``<output_dir>.replaced-<UTC time>`` and training starts fresh.
- :func:`replaced_runs` lists the folders moved aside; ``spatialflow clean-replaced`` prints them and the
  command that would remove them. No code here deletes a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from spatialflow.errors import ConfigError

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.lock.owner"
IDENTITY_NAME = "identity.json"
REPLACED_MARK = ".replaced-"


@contextlib.contextmanager
def lock_run_dir(output_dir: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``output_dir`` (created if missing) for the duration of the block."""
    folder = Path(output_dir)
    _check_writable(folder)
    lock = FileLock(folder / LOCK_NAME)
    owner_file = folder / OWNER_NAME
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner_file.read_text(encoding="utf-8").strip() if owner_file.is_file() else "unknown process"
        raise ConfigError(f"{folder}: another training run holds this folder ({holder}); wait for it to "
                          "finish or stop it, or choose another output_dir") from None
    try:
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        owner_file.write_text(f"pid {os.getpid()} on {socket.gethostname()} by {_user()}, since {started}\n",
                              encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            owner_file.unlink()
        lock.release()


def _check_writable(folder: Path) -> None:
    """Create ``folder`` and its lock file, or one ``ConfigError`` line saying why not (the lock library would
    report any failure as 'held by another process')."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666))
    except OSError as exc:
        what = exc.filename if exc.filename else folder
        raise ConfigError(f"{folder}: cannot write the run folder there ({what}: {exc.strerror}); choose "
                          "another output_dir") from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


# The code that training runs: a change to any of these files changes the weights a run produces, so it is
# part of a run's identity, and these are the code dependencies of every `train@<row>` stage in dvc.yaml.
TRAINING_CODE = ("src/spatialflow/models", "src/spatialflow/engine", "src/spatialflow/data")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/spatialflow


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_code_digest() -> str:
    """sha256 over the training code's Python files (path + bytes, sorted)."""
    digest = hashlib.sha256()
    for entry in TRAINING_CODE:
        path = PACKAGE_ROOT / Path(entry).relative_to("src/spatialflow")
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(PACKAGE_ROOT).as_posix().encode())
            digest.update(_sha256_file(file).encode())
    return digest.hexdigest()


def run_identity(cfg) -> dict:
    """A run's full training identity: the config's identity, the content of the files it reads by path
    (training annotations, init checkpoint, pretrained backbone) and the training code."""
    from spatialflow.engine.config import training_identity

    identity = training_identity(cfg)
    inputs = {}
    if cfg.data.train is not None:
        inputs["data.train.json"] = cfg.data.train.json
    if cfg.train.init_checkpoint:
        inputs["train.init_checkpoint"] = cfg.train.init_checkpoint
    if cfg.model.get("backbone_weights") and cfg.model.get("pretrained_backbone"):
        inputs["model.backbone_weights"] = cfg.model["backbone_weights"]
    identity["inputs"] = {key: _sha256_file(Path(p)) if Path(p).is_file() else "missing"
                          for key, p in inputs.items()}
    identity["code"] = training_code_digest()
    return identity


def stored_identity(output_dir: str | os.PathLike) -> dict | None:
    """The identity recorded in ``output_dir`` (``identity.json``), or None where no run started."""
    path = Path(output_dir) / IDENTITY_NAME
    if not path.is_file():
        return {"unrecorded": True} if any(Path(output_dir).glob("checkpoints/checkpoint_*.pt")) else None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {"unreadable": str(path)}


def write_identity(output_dir: str | os.PathLike, identity: dict) -> None:
    from spatialflow.utils.atomic import atomic_write_json

    atomic_write_json(Path(output_dir) / IDENTITY_NAME, identity)


def first_difference(a: object, b: object, prefix: str = "") -> str | None:
    """The first dotted key where two nested values differ, with both values (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if a != b:
        return f"{prefix.rstrip('.')}: {json.dumps(a)} -> {json.dumps(b)}"
    return None


def check_identity(output_dir: str | os.PathLike, identity: dict, *, replace: bool) -> Path | None:
    """Make ``output_dir`` safe to train ``identity`` in; returns where an old run was moved, if anywhere.

    Same identity (or an empty folder): nothing happens (training resumes). Another identity: ConfigError,
    or with ``replace`` the folder is renamed to ``<output_dir>.replaced-<time>`` (never deleted).
    """
    folder = Path(output_dir)
    stored = stored_identity(folder)
    if stored is None or stored == identity:
        return None
    change = first_difference(stored, identity)
    if not replace:
        raise ConfigError(f"{folder}: holds a run of another training identity ({change}); resume it with its "
                          "own config, choose another output_dir, or pass --replace to move it aside")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder.with_name(f"{folder.name}{REPLACED_MARK}{stamp}")
    folder.rename(target)
    (target / "REPLACED.txt").write_text(
        f"Moved aside on {stamp}: the requested training identity differs ({change}).\n"
        f"Nothing was deleted. List old runs with `spatialflow clean-replaced {folder.parent}`.\n",
        encoding="utf-8")
    return target


def replaced_runs(root: str | os.PathLike) -> list[Path]:
    """Run folders moved aside under ``root`` (any depth), oldest name first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob(f"*{REPLACED_MARK}*") if p.is_dir() and REPLACED_MARK in p.name)
