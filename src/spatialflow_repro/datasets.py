"""Kedro datasets of this project. Every save is atomic (temp file + rename): an interrupted run never
leaves a half-written metrics file that DVC or the tables would then trust. A file that does not parse is
one line naming it (``spatialflow.errors.DataError``)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from spatialflow.errors import DataError
from spatialflow.utils.atomic import atomic_save_image, atomic_write_json, atomic_write_text
from spatialflow.utils.yaml_io import read_yaml


def read_json_file(path: Path) -> Any:
    """A JSON file, or DataError naming it (not UTF-8, not JSON, nested absurdly deep)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise DataError(path, "JSON nested too deeply") from None


class _FileDataset(AbstractDataset[Any, Any]):
    """One file at ``filepath``."""

    def __init__(self, filepath: str, metadata: dict | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    @property
    def path(self) -> Path:
        return Path(self._filepath)

    def _check_exists(self) -> Path:
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: not found (has the stage that writes it run?)")
        return self.path

    def _exists(self) -> bool:
        return self.path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class JSONDataset(_FileDataset):
    """A JSON file, written atomically, indented (stable diffs in git). ``allow_missing``: a file that does
    not exist loads as None (what reads it handles "not run yet")."""

    def __init__(self, filepath: str, allow_missing: bool = False, metadata: dict | None = None) -> None:
        super().__init__(filepath, metadata)
        self._allow_missing = allow_missing

    def load(self) -> Any:
        if self._allow_missing and not self.path.exists():
            return None
        return read_json_file(self._check_exists())

    def save(self, data: Any) -> None:
        atomic_write_json(self.path, data)


class TextDataset(_FileDataset):
    """A UTF-8 text file (a markdown report, a CSV), written atomically."""

    def load(self) -> str:
        return self._check_exists().read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        atomic_write_text(self.path, data)


class YAMLDataset(_FileDataset):
    """A YAML file read strictly (``spatialflow.utils.yaml_io``); read-only."""

    def load(self) -> Any:
        return read_yaml(self._check_exists())

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self.path}: is read-only")


class PNGDataset(_FileDataset):
    """A PIL image saved as PNG, atomically."""

    def load(self) -> Any:
        from PIL import Image

        with Image.open(self._check_exists()) as image:
            return image.copy()

    def save(self, data: Any) -> None:
        atomic_save_image(self.path, data)


class JSONFolderDataset(AbstractDataset[dict, dict]):
    """A folder of JSON files, one per key: ``{key: obj}`` <-> ``<folder>/<key>.json``.

    DVC stages can then depend on one file of the folder, so a change to one key reruns one stage.
    ``allow_missing``: a folder that does not exist loads as ``{}`` (nothing has written into it yet).
    """

    def __init__(self, path: str, allow_missing: bool = False, metadata: dict | None = None) -> None:
        self._path = PurePosixPath(path)
        self._allow_missing = allow_missing
        self.metadata = metadata

    def load(self) -> dict:
        folder = Path(self._path)
        if not folder.is_dir():
            if self._allow_missing:
                return {}
            raise DatasetError(f"{folder}: folder not found")
        return {p.stem: read_json_file(p) for p in sorted(folder.glob("*.json"))}

    def save(self, data: dict) -> None:
        folder = Path(self._path)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(p.stem for p in folder.glob("*.json")) - set(data):
            (folder / f"{stale}.json").unlink()
        for key, obj in data.items():
            atomic_write_json(folder / f"{key}.json", obj)

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class TextFolderDataset(AbstractDataset[dict, dict]):
    """A folder of text files: ``{file name: text}``, each written atomically (other files are left alone)."""

    def __init__(self, path: str, metadata: dict | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> dict:
        folder = Path(self._path)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder not found")
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}

    def save(self, data: dict) -> None:
        for name, text in data.items():
            if Path(name).name != name or name.startswith("."):
                raise DatasetError(f"{self._path}: {name!r} is not a plain file name")
            atomic_write_text(Path(self._path) / name, text)

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class FolderPath(AbstractDataset[str, None]):
    """A folder that a node fills itself (checkpoints written as training goes, prediction PNGs, figures):
    loads as its path, so the catalog owns the path and the node owns what it writes there.

    The path is given relative to the project root (the working folder of ``kedro run``) when it lies
    inside it, although Kedro makes catalog paths absolute: the records that name it (``training.json``,
    the row metrics) must hold in every clone, and in a worker's checkout as on the head."""

    def __init__(self, path: str, metadata: dict | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> str:
        path = Path(self._path)
        try:
            return str(path.relative_to(Path.cwd())) if path.is_absolute() else str(path)
        except ValueError:  # outside the project: as given
            return str(path)

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._path}: a folder path; nodes write into it, not through the catalog")

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
