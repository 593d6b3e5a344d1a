"""Kedro hooks of the project."""

from __future__ import annotations

import time

from kedro.framework.hooks import hook_impl

from spatialflow_repro.config_loader import PARAMS_FILE
from spatialflow_repro.params_check import check_params
from spatialflow_repro.repro_progress import say_stage


class CheckParamsHook:
    """Every ``kedro run`` checks the parameters it runs with (params.yaml merged with conf/<env> and
    ``--params``) before any pipeline is built or node runs: a bad grid is one line per problem, not a
    node's traceback."""

    @hook_impl
    def after_context_created(self, context) -> None:
        # the config loader, not context.params: that property also type-checks every registered pipeline
        loader = context.config_loader
        source = PARAMS_FILE if not loader.runtime_params else f"{PARAMS_FILE} with --params"
        check_params(loader["parameters"], source)


class StageProgressHook:
    """Inside ``dvc repro``, each ``kedro run`` says which stage of how many it is when it starts and ends
    (:mod:`spatialflow_repro.repro_progress`)."""

    def __init__(self, clock=time.time):
        self.clock, self.started = clock, None

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.started = self.clock()
        say_stage(self.started)

    @hook_impl
    def after_pipeline_run(self) -> None:
        now = self.clock()
        say_stage(now, took=now - (self.started if self.started is not None else now))
