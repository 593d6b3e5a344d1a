"""The project's Kedro datasets: atomic files, folders of files, folder paths that hold in every clone."""

from __future__ import annotations

import json

import pytest
from kedro.io import DatasetError

from spatialflow.errors import DataError
from spatialflow_repro.datasets import FolderPath, JSONDataset, JSONFolderDataset, TextFolderDataset


def test_a_folder_path_inside_the_project_is_given_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert FolderPath(str(tmp_path / "data/06_models/t2_baseline")).load() == "data/06_models/t2_baseline"
    assert FolderPath("data/runs/t2_baseline").load() == "data/runs/t2_baseline"
    assert FolderPath("/elsewhere/runs").load() == "/elsewhere/runs"  # outside the project: as given
    with pytest.raises(DatasetError, match="nodes write into it"):
        FolderPath("data/runs").save("anything")


def test_json_files_missing_allowed_or_not_and_a_bad_one_names_itself(tmp_path):
    assert JSONDataset(str(tmp_path / "absent.json"), allow_missing=True).load() is None
    with pytest.raises(DatasetError, match="absent.json: not found"):
        JSONDataset(str(tmp_path / "absent.json")).load()
    assert JSONFolderDataset(str(tmp_path / "nothing"), allow_missing=True).load() == {}
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "a.json").write_text(json.dumps({"pq": 1.0}))
    assert JSONFolderDataset(str(tmp_path / "rows")).load() == {"a": {"pq": 1.0}}
    (tmp_path / "rows" / "b.json").write_text("[" * 100_000)
    with pytest.raises(DatasetError) as failed:
        JSONFolderDataset(str(tmp_path / "rows")).load()
    assert isinstance(failed.value.__cause__, DataError) and "b.json: JSON nested too deeply" in str(failed.value.__cause__)


def test_a_text_folder_writes_plain_file_names_only(tmp_path):
    folder = TextFolderDataset(str(tmp_path / "tables"))
    folder.save({"table1.md": "# T1\n", "index.md": "x\n"})
    assert folder.load() == {"index.md": "x\n", "table1.md": "# T1\n"}
    with pytest.raises(DatasetError, match="not a plain file name"):
        folder.save({"../escape.md": "no"})
    assert not (tmp_path / "escape.md").exists()
