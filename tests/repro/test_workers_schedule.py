"""The rows route's scheduling (``spatialflow_repro.workers``): each stage as soon as its inputs are there, the
longest chain of training first, the workers' CPUs. Hand-made DAGs, fake workers; no DVC."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from spatialflow.errors import ConfigError
from spatialflow_repro import workers
from spatialflow_repro.workers import critical_path, run_stages, slot_cpus

# A small copy of the pipeline's shape: Table 1's two rows -> their evaluations -> the search -> a long
# deformable row and a short COCO-like row; a Cityscapes-like row that needs only the data; the tables last.
NEEDS = {
    "prepare": [],
    "table1@a": ["prepare"], "table1@b": ["prepare"], "train@city": ["prepare"],
    "evaluate_lambda@a": ["table1@a"], "evaluate_lambda@b": ["table1@b"],
    "search": ["evaluate_lambda@a", "evaluate_lambda@b"],
    "train@dcn": ["search"], "train@coco": ["search"],
    "evaluate@dcn": ["train@dcn"], "evaluate@coco": ["train@coco"], "evaluate@city": ["train@city"],
    "tables": ["evaluate@dcn", "evaluate@coco", "evaluate@city"],
}
COSTS = {"table1@a": 1.0, "table1@b": 1.0, "train@city": 5.0, "train@dcn": 10.0, "train@coco": 2.0}


def _upstream(needs: dict[str, list[str]]) -> dict[str, set[str]]:
    def walk(stage: str) -> set[str]:
        return {n for need in needs[stage] for n in {need} | walk(need)}

    return {stage: walk(stage) for stage in needs}


UPSTREAM = _upstream(NEEDS)
ORDER = list(NEEDS)  # written upstream first


class FakeWorkers:
    """Workers that finish at once (``fail``: these raise); every call is logged in ``events``."""

    def __init__(self, stale: set[str], fail: set[str] = frozenset()):
        self.stale, self.fail, self.events = stale, fail, []
        self.running = 0

    def stale_of(self, stages: list[str]) -> list[str]:
        return [s for s in stages if s in self.stale]

    def run_head(self, stages: list[str]) -> None:
        self.events.append(("head", tuple(sorted(stages))))

    def start(self, stage: str) -> Future:
        self.events.append(("worker", stage))
        future: Future = Future()
        if stage in self.fail:
            future.set_exception(ConfigError(f"{stage}: the worker failed"))
        else:
            future.set_result(None)
        return future

    def run(self, jobs: int) -> list[tuple]:
        run_stages(ORDER, UPSTREAM, self.stale_of, self.run_head, self.start, jobs, critical_path(UPSTREAM, COSTS),
                   say=lambda line: None)
        return self.events


def test_critical_path_is_own_cost_plus_the_longest_chain_that_needs_the_stage():
    chain = critical_path(UPSTREAM, COSTS)
    assert chain["train@dcn"] == 10.0 and chain["train@coco"] == 2.0 and chain["train@city"] == 5.0
    assert chain["table1@a"] == 1.0 + 10.0  # the search waits for it, the deformable row for the search
    assert chain["search"] == 10.0 and chain["prepare"] == 11.0 and chain["tables"] == 0.0


def test_table1_then_the_long_row_go_first_and_the_head_runs_each_stage_once_its_inputs_are_there():
    events = FakeWorkers(stale=set(COSTS)).run(jobs=2)
    workers_order = [stage for kind, stage in events if kind == "worker"]
    # Table 1's rows before the Cityscapes-like row (their chain leads to the deformable row) ...
    assert workers_order[:2] == ["table1@a", "table1@b"]
    # ... and the deformable row before it too: the freed worker waited for the head's search
    assert workers_order[2:4] == ["train@dcn", "train@city"] and workers_order[4] == "train@coco"
    search = events.index(("head", ("search",)))
    assert search < events.index(("worker", "train@dcn")) < events.index(("worker", "train@city"))
    ran = [stage for kind, stages in events if kind == "head" for stage in stages]
    assert sorted(ran) == sorted(ORDER)  # every stage once on the head (the trained rows restored there)
    for stage in ORDER:  # never before what it needs
        assert all(ran.index(need) < ran.index(stage) for need in UPSTREAM[stage])
    for stage in COSTS:  # a row is restored by the head only after its worker trained it
        assert events.index(("worker", stage)) < next(i for i, e in enumerate(events) if e[0] == "head" and stage in e[1])


def test_a_free_worker_takes_a_shorter_row_rather_than_idle():
    events = FakeWorkers(stale=set(COSTS)).run(jobs=3)
    # nothing the head can do makes a longer chain ready while Table 1 trains: the third worker takes the
    # Cityscapes-like row before any worker has finished
    assert events[1:4] == [("worker", "table1@a"), ("worker", "table1@b"), ("worker", "train@city")]


def test_up_to_date_rows_stay_with_the_head_and_at_most_jobs_train_at_once():
    fake = FakeWorkers(stale={"train@coco"})
    events = fake.run(jobs=1)
    assert [e for e in events if e[0] == "worker"] == [("worker", "train@coco")]
    assert ("head", ("table1@a", "table1@b", "train@city")) in events  # unchanged: `dvc repro` skips them


def test_a_failed_worker_stops_the_head_before_anything_downstream_runs():
    fake = FakeWorkers(stale=set(COSTS), fail={"table1@b"})
    with pytest.raises(ConfigError, match="table1@b: the worker failed"):
        fake.run(jobs=2)
    ran = [stage for kind, stages in fake.events if kind == "head" for stage in stages]
    assert "search" not in ran and "evaluate_lambda@b" not in ran


def test_a_stage_that_can_never_run_is_named():  # a cycle, which DVC refuses first: the loop's own guard
    with pytest.raises(ConfigError, match="no stage can run: a, b"):
        run_stages(["a", "b"], {"a": {"b"}, "b": {"a"}}, lambda s: [], lambda s: None, None, 1, {},
                   say=lambda line: None)


@pytest.mark.parametrize(("cpus", "jobs", "blocks"), [
    ({0, 1}, 2, [[0], [1]]),
    ({0, 1, 2, 3}, 2, [[0, 1], [2, 3]]),
    ({4, 5, 6}, 2, [[4], [5]]),          # the process's own CPUs (a cgroup's), an odd one left over
    ({0}, 2, [[0], [0]]),                # fewer CPUs than rows: both share it
])
def test_each_worker_slot_keeps_to_its_own_block_of_cpus(monkeypatch, cpus, jobs, blocks):
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: cpus, raising=False)
    assert [slot_cpus(slot, jobs) for slot in range(jobs)] == blocks


def test_a_worker_pinned_to_cpus_that_do_not_exist_says_so_in_one_line(monkeypatch):
    def refuse(pid, cpus):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(workers.os, "sched_setaffinity", refuse, raising=False)
    with pytest.raises(ConfigError, match=r"SPATIALFLOW_WORKER_CPUS='999': not CPUs of this machine"):
        workers.keep_to_cpus("999")
    with pytest.raises(ConfigError, match=r"SPATIALFLOW_WORKER_CPUS='a,b'"):
        workers.keep_to_cpus("a,b")
    workers.keep_to_cpus(None)  # unset: nothing pinned, nothing raised
