"""The model package's floors: data <- panoptic <- models <- engine / inference <- commands. Imports point
down only (no cycle, nothing upward), and ``spatialflow`` never imports Kedro, DVC or MLflow."""

from __future__ import annotations

import ast

from helpers.paths import REPO_ROOT

SRC = REPO_ROOT / "src"
FLOOR = {"errors": 0, "utils": 0, "data": 1, "panoptic": 2, "models": 3, "engine": 4, "inference": 4,
         "benchmarks": 5, "commands": 5, "cli": 5, "__init__": 5}


def imports(package: str) -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import in ``src/<package>``, lazy ones too."""
    found = []
    for path in sorted((SRC / package).rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((module, node.module, node.lineno))
            elif isinstance(node, ast.Import):
                found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def test_spatialflow_imports_point_down_only():
    upward = []
    for module, imported, line in imports("spatialflow"):
        if not imported.startswith("spatialflow."):
            continue
        src, dst = module.split(".")[1], imported.split(".")[1]
        if src != dst and FLOOR[dst] > FLOOR[src]:
            upward.append(f"{module}:{line} imports {imported}")
    assert upward == []


def test_the_model_package_knows_nothing_of_the_pipeline_tools():
    tools = ("kedro", "dvc", "mlflow", "spatialflow_repro")
    assert [f"{m}:{line} {i}" for m, i, line in imports("spatialflow") if i.split(".")[0] in tools] == []
