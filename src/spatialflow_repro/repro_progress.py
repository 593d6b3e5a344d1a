"""Where a `make repro` is: the stages it will run, and a one-line banner as each starts and ends.

Before ``dvc repro`` (or the rows route) starts, :func:`write_plan` records the stages that will run, in
DVC's order (every stale stage and everything downstream of one), with the time, in
``.dvc/tmp/repro-plan.json`` (or the file ``$SPATIALFLOW_REPRO_PLAN`` names, which the rows route's workers
inherit). Each stage's ``kedro run`` knows its stage from DVC (``$DVC_STAGE``, set by DVC for every
command) and prints, through the Kedro hook ``spatialflow_repro.hooks.StageProgressHook``::

    [make repro 0:42:10] stage 14 of 45: train@t2_baseline
    [make repro 0:46:22] stage 14 of 45: train@t2_baseline done in 4 min 12 s

One line each, so a log file stays readable; a stage run on its own (a plain ``dvc repro``, or a stage not in
the plan) says its name.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from spatialflow.utils.atomic import atomic_write_json

PLAN_ENV = "SPATIALFLOW_REPRO_PLAN"
DEFAULT_PLAN = Path(".dvc") / "tmp" / "repro-plan.json"


def plan_path(root: str | Path = ".") -> Path:
    return Path(os.environ.get(PLAN_ENV) or Path(root) / DEFAULT_PLAN).resolve()


def planned_stages(root: str | Path) -> list[str]:
    """The stages ``dvc repro`` will run: each stale one and every stage downstream of one, in DVC's
    topological generations."""
    from spatialflow_repro.workers import downstream_stages, generations, stage_graph, stale_stages

    graph = stage_graph(root)
    order = [stage for generation in generations(root, graph) for stage in generation]
    planned = downstream_stages(graph, stale_stages(root, order))
    return [stage for stage in order if stage in planned]


def write_plan(root: str | Path, stages: Sequence[str], clock=time.time) -> Path:
    path = plan_path(root)
    atomic_write_json(path, {"started": clock(), "stages": list(stages)})
    return path


def read_plan(path: Path) -> dict[str, Any] | None:
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and isinstance(plan.get("stages"), list) else None


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _duration_text(seconds: float) -> str:
    minutes, seconds = divmod(max(0, int(round(seconds))), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def banner(stage: str, plan: dict[str, Any] | None, now: float, took: float | None = None) -> str:
    """The line for ``stage`` starting (``took`` None) or done after ``took`` seconds."""
    done = "" if took is None else f" done in {_duration_text(took)}"
    if plan is None or stage not in plan["stages"]:
        return f"[stage] {stage}{done}"
    number, count = plan["stages"].index(stage) + 1, len(plan["stages"])
    return f"[make repro {_clock_text(now - float(plan['started']))}] stage {number} of {count}: {stage}{done}"


def say_stage(clock: float, took: float | None = None, out=None) -> None:
    """Print the banner of the DVC stage this process runs (``$DVC_STAGE``; nothing outside ``dvc repro``).
    Stages are numbered only under ``make repro``, which names its plan in ``$SPATIALFLOW_REPRO_PLAN``; a
    ``dvc repro`` typed later would otherwise count from the plan an earlier ``make repro`` left."""
    stage = os.environ.get("DVC_STAGE")
    if stage:
        plan = read_plan(plan_path(os.environ.get("DVC_ROOT", "."))) if os.environ.get(PLAN_ENV) else None
        print(banner(stage, plan, clock, took), file=out or sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m spatialflow_repro plan``: record and print the stages a ``dvc repro`` here would run."""
    root = Path.cwd()
    stages = planned_stages(root)
    path = write_plan(root, stages)
    print(f"make repro: {len(stages)} stage(s) to run" + (f", plan in {path}" if stages else ""), flush=True)
    return 0
