"""The project's commands (Kedro loads ``cli`` from here; ``python -m spatialflow_repro`` runs them too).

- ``kedro run`` is Kedro's own run command, except that a user error (a
  :class:`spatialflow.errors.SpatialFlowError`: bad data, bad settings, a bad checkpoint) is one line
  ``<DVC stage or pipelines>: error: <message>`` on stderr and exit status 2, without a traceback; any other
  exception is a bug and keeps its traceback. Every DVC stage runs this command.
- ``kedro check-params [PATH]`` (or ``python -m spatialflow_repro check-params``) checks the whole experiment grid of params.yaml (one line per problem,
  exit status 2); ``make repro`` runs it before ``dvc repro``.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from kedro.framework.cli.project import run as kedro_run

from spatialflow.errors import SpatialFlowError

USER_ERROR_STATUS = 2


def user_error(exc: BaseException) -> SpatialFlowError | None:
    """The SpatialFlowError that ``exc`` is, or that caused it (Kedro re-raises a node's own exception; a
    wrapper may chain it as its cause or context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, SpatialFlowError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def report_user_error(label: str, error: SpatialFlowError) -> None:
    """``<label>: error: <line>`` on stderr for each line of the error's message."""
    for line in str(error).splitlines() or [type(error).__name__]:
        click.echo(f"{label}: error: {line}", err=True)


class _NodeFailureFilter(logging.Filter):
    """Drops Kedro's "Node ... failed with error" log record: a user error is then reported once (the line
    this command prints), a bug by its traceback, which holds the same message."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Node %s failed with error")


@click.group(name="spatialflow_repro")
def cli() -> None:
    """SpatialFlow-Repro project commands."""


@cli.command(name="run", params=kedro_run.params, help=kedro_run.help, short_help=kedro_run.short_help)
@click.pass_context
def run(ctx: click.Context, **kwargs):
    """Kedro's ``run``, with one line and exit status 2 for a user error (see the module docstring)."""
    node_logger = logging.getLogger("kedro.pipeline.node")
    node_filter = _NodeFailureFilter()
    node_logger.addFilter(node_filter)
    try:
        return ctx.invoke(kedro_run, **kwargs)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        pipelines = list(kwargs.get("pipelines") or []) or ([kwargs["pipeline"]] if kwargs.get("pipeline") else [])
        report_user_error(os.environ.get("DVC_STAGE") or ",".join(pipelines) or "kedro run", error)
        ctx.exit(USER_ERROR_STATUS)
    finally:
        node_logger.removeFilter(node_filter)


@cli.command(name="check-params", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def check_params(args: tuple[str, ...]) -> None:
    """Check the experiment grid of params.yaml (every row, the active profile): one line per problem."""
    from spatialflow_repro.params_check import main

    sys.exit(main(list(args)))
