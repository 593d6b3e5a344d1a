"""Kedro datasets of this project. Every save is atomic (temp file + rename): an interrupted run never
leaves a half-written metrics file that DVC or the tables would then trust."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from spatialflow.utils.atomic import atomic_write_json


class JSONDataset(AbstractDataset[Any, Any]):
    """A JSON file, written atomically with sorted, indented keys (stable diffs in git)."""

    def __init__(self, filepath: str, metadata: dict | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def load(self) -> Any:
        path = Path(self._filepath)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: not found (has the stage that writes it run?)") from None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: not valid JSON ({exc})") from None

    def save(self, data: Any) -> None:
        atomic_write_json(Path(self._filepath), data)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class JSONFolderDataset(AbstractDataset[dict, dict]):
    """A folder of JSON files, one per key: ``{key: obj}`` <-> ``<folder>/<key>.json``.

    DVC stages can then depend on one file of the folder, so a change to one key reruns one stage.
    """

    def __init__(self, path: str, metadata: dict | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def load(self) -> dict:
        folder = Path(self._path)
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder not found")
        return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}

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
