"""``python -m spatialflow_repro [run] [OPTIONS]`` runs the Kedro project (same as ``kedro run``);
``python -m spatialflow_repro check-params [PATH]`` checks params.yaml's experiment grid (``make repro``
runs it before ``dvc repro``); ``plan`` records the stages a ``dvc repro`` will run (the stage banners
number them); ``rows`` reproduces the pipeline with its training stages on workers and
``train-stage`` is the worker (:mod:`spatialflow_repro.workers`). Each reports a user error as one line
(see :mod:`spatialflow_repro.cli`)."""

import sys
from pathlib import Path


def main(args: list[str] | None = None, **kwargs):
    args = sys.argv[1:] if args is None else list(args)
    if args[:1] == ["check-params"]:  # no Kedro import: it would set up its logging and say so
        from spatialflow_repro.params_check import main as check_params

        return check_params(args[1:])
    if args[:1] == ["plan"]:
        from spatialflow_repro.repro_progress import main as plan

        return plan(args[1:])
    if args[:1] in (["rows"], ["train-stage"]):
        from spatialflow_repro.rows_command import main as rows_main

        return rows_main(args)
    if args[:1] == ["run"]:
        args = args[1:]
    from kedro.framework.cli.utils import find_run_command
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    run = find_run_command(package_name)
    return run.main(args, prog_name="python -m spatialflow_repro run", **kwargs)


if __name__ == "__main__":
    sys.exit(main())
