"""Rows on many workers, collected in one workspace through DVC's run-cache.

A *worker* trains one training stage (``table1@``, ``train@``, ``train_pretrained@<row>``) in its own checkout
of the head's state, with ``dvc repro --single-item`` there. Its outputs and the stage's run-cache entry
reach the head through a cache both use (one machine) or the team's DVC remote (``dvc push --run-cache``;
a cluster). The *head* then runs ``dvc repro`` on that stage: "Stage ... is cached - skipping run, checking
out outputs": it trains nothing and writes the only ``dvc.lock`` (the workers' are thrown away, never
merged). DVC's DAG decides the order: each stage runs as soon as the stages it needs are done (no
generation waits for its slowest row); the stale training stages go to the workers, the one that starts the
longest chain of training first (Table 1's rows, whose search the COCO-like rows wait for, then Table 6's
deformable row), and the head runs everything else.

- One machine (:func:`train_rows_here`): ``jobs`` git worktrees at a snapshot of the workspace (``git commit-
  tree``: edits and new files included, nothing in the workspace touched), sharing the head's DVC cache and its
  training working area ``data/runs`` (an interrupted row resumes), each row on its own ``cpus / jobs`` CPUs.
- A cluster (:func:`train_rows_with_submitit`): a SLURM job per row through submitit (its local executor
  where there is no SLURM), ``jobs`` at a time; each job clones the head's repository at the snapshot
  (``refs/spatialflow/rows``) and runs ``python -m spatialflow_repro train-stage``, the one command any other
  scheduler can run too.

A worker refuses, before training, a checkout whose commit, tracked files or upstream data differ from the
head's: what it trained would be a row the head cannot use.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from spatialflow.errors import ConfigError

TRAINING_STAGES = ("table1", "train", "train_pretrained")
SNAPSHOT_REF = "refs/spatialflow/rows"
WORKING_AREA = "data/runs"
CPUS_ENV = "SPATIALFLOW_WORKER_CPUS"


def is_training(stage: str) -> bool:
    return stage.split("@", 1)[0] in TRAINING_STAGES


def _run(cmd: Sequence[str], cwd: str | Path, env: dict | None = None, capture: bool = True) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, text=True, stdin=subprocess.DEVNULL,
                          capture_output=capture)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] if capture else []
        raise ConfigError(f"{' '.join(cmd)} (in {cwd}) failed with status {proc.returncode}"
                          + (f": {detail[0]}" if detail else ""))
    return proc.stdout if capture else ""


def dvc(*args: str) -> list[str]:
    """The DVC of this Python environment (workers run the same one)."""
    return [sys.executable, "-m", "dvc", *args]


# ------------------------------------------------------------------------------------------- the DAG


def stage_graph(root: str | Path):
    """DVC's own graph of the stages of ``dvc.yaml``: an edge goes from a stage to a stage it depends on."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.index.graph


def generations(root: str | Path, graph=None) -> list[list[str]]:
    """Every stage of ``dvc.yaml`` in topological generations, each stage in the earliest one it can run in
    (right after everything it needs): the rows that need no search train alongside Table 1's, rather than
    alone just before the stages that need them. ``graph``: :func:`stage_graph`'s, if already built."""
    import networkx as nx

    graph = stage_graph(root) if graph is None else graph
    return [sorted(stage.addressing for stage in generation)
            for generation in nx.topological_generations(graph.reverse(copy=False))]


def upstream_stages(root: str | Path, stage: str) -> list[str]:
    """The stages whose outputs ``stage`` depends on, directly or not."""
    import networkx as nx

    graph = stage_graph(root)
    node = next(s for s in graph.nodes if s.addressing == stage)
    return sorted(s.addressing for s in nx.descendants(graph, node))


def downstream_stages(graph, stages: Sequence[str]) -> set[str]:
    """``stages`` and every stage that depends on one of them, directly or not (in :func:`stage_graph`'s
    ``graph``)."""
    import networkx as nx

    by_name = {node.addressing: node for node in graph.nodes}
    found = set(stages)
    for name in stages:
        found |= {node.addressing for node in nx.ancestors(graph, by_name[name])}
    return found


def stale_stages(root: str | Path, stages: Sequence[str]) -> list[str]:
    """Those of ``stages`` that ``dvc status`` finds changed."""
    if not stages:
        return []
    status = json.loads(_run(dvc("status", "--json", *stages), root) or "{}")
    return [stage for stage in stages if stage in status]


def snapshot(root: str | Path) -> str:
    """A commit of the workspace as it is: tracked edits and new files git does not ignore (params.yaml,
    dvc.lock, the small results in git), built in a temporary index so that the workspace, its index and
    its branch stay untouched; kept reachable as ``refs/spatialflow/rows``."""
    root = Path(root)
    index = root / _run(["git", "rev-parse", "--git-path", "spatialflow-rows.index"], root).strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    head = _run(["git", "rev-parse", "HEAD"], root).strip()
    _run(["git", "read-tree", head], root, env=env)
    _run(["git", "add", "--all"], root, env=env)
    tree = _run(["git", "write-tree"], root, env=env).strip()
    if tree == _run(["git", "rev-parse", f"{head}^{{tree}}"], root).strip():
        commit = head
    else:
        commit = _run(["git", "commit-tree", tree, "-p", head, "-m", "spatialflow rows: the head's workspace"],
                      root, env=env).strip()
    _run(["git", "update-ref", SNAPSHOT_REF, commit], root)
    return commit


# ---------------------------------------------------------------------------------------- the worker


def check_commit(checkout: str | Path, commit: str) -> None:
    """Refuse (ConfigError, one line) a checkout at another commit than the head's snapshot, or with edited
    tracked files (params.yaml, dvc.lock, code): a row trained there would not be the head's."""
    here = _run(["git", "rev-parse", "HEAD"], checkout).strip()
    if here != commit:
        raise ConfigError(f"{checkout}: at commit {here[:12]}, the head's is {commit[:12]}; a row trained here "
                          "would not be the head's (check out the head's commit)")
    edited = [line[3:] for line in _run(["git", "status", "--porcelain", "--untracked-files=no"], checkout).splitlines()
              if not line.endswith(".gitignore")]  # DVC lists the outputs it checks out there
    if edited:
        raise ConfigError(f"{checkout}: tracked files differ from the head's commit ({', '.join(edited[:5])}); "
                          "a row trained here would not be the head's")


def check_upstream(checkout: str | Path, stage: str, upstream: Sequence[str]) -> None:
    """Refuse a checkout whose upstream stages (data, params, code) differ from the head's ``dvc.lock``."""
    changed = stale_stages(checkout, upstream)
    if changed:
        raise ConfigError(f"{checkout}: {', '.join(changed)} differ from the head's dvc.lock (data, params or "
                          f"code); {stage} would not train on the head's inputs")


def train_stage(checkout: str | Path, stage: str, commit: str, push: bool = False) -> None:
    """The worker: check the checkout is the head's, get the upstream outputs (from the shared cache, or
    ``dvc pull`` from the remote when ``push``) and check them, train ``stage`` alone, and with ``push`` send
    its outputs and run-cache entry to the remote."""
    keep_to_cpus(os.environ.get(CPUS_ENV))
    if not is_training(stage):
        raise ConfigError(f"{stage}: not a training stage ({', '.join(s + '@<row>' for s in TRAINING_STAGES)})")
    check_commit(checkout, commit)
    upstream = upstream_stages(checkout, stage)
    if upstream:
        _run(dvc("pull" if push else "checkout", *upstream), checkout)
        check_upstream(checkout, stage, upstream)
    _run(dvc("repro", "--single-item", stage), checkout, capture=False)
    if push:
        _run(dvc("push", "--run-cache", stage), checkout)


# --------------------------------------------------------------------------------- the head's loop


def training_costs(root: str | Path, stages: Sequence[str]) -> dict[str, float]:
    """Each training stage's estimated cost (:func:`spatialflow_repro.rows.training_cost`: relative, not a
    time)."""
    from spatialflow.utils.yaml_io import read_yaml
    from spatialflow_repro.rows import training_cost

    params = read_yaml(Path(root) / "params.yaml")
    return {stage: training_cost(stage.split("@", 1)[1], params) for stage in stages}


def critical_path(upstream: dict[str, set[str]], costs: dict[str, float]) -> dict[str, float]:
    """For each stage, the cost of the longest chain of training it starts: its own cost (0 for a stage that
    trains nothing) plus the largest such chain among the stages that need it, directly or not. The workers
    take the ready stage with the longest chain first, so that Table 1's rows (whose search the COCO-like
    rows wait for) and then Table 6's deformable row start before the rows nothing waits for."""
    downstream: dict[str, set[str]] = {stage: set() for stage in upstream}
    for stage, needs in upstream.items():
        for need in needs:
            downstream[need].add(stage)
    chain: dict[str, float] = {}
    for stage in sorted(upstream, key=lambda s: len(upstream[s]), reverse=True):  # downstream ones first
        chain[stage] = costs.get(stage, 0.0) + max((chain[d] for d in downstream[stage]), default=0.0)
    return chain


def run_stages(order: Sequence[str], upstream: dict[str, set[str]], stale: Callable[[list[str]], list[str]],
               run_head: Callable[[list[str]], None], start_worker: Callable[[str], Future], jobs: int,
               chain: dict[str, float], say: Callable[[str], None] = print) -> None:
    """The head's loop, as soon as each stage can run (no generation waits for its slowest row).

    ``order``: every stage, each after the stages it needs; ``upstream[s]``: the stages ``s`` needs, directly
    or not. Over and over: the head runs (``run_head``: its ``dvc repro``) every stage whose upstream stages
    it has run, except the training stages ``stale`` finds changed once their upstream is done: those go to
    the workers (``start_worker`` returns a future; at most ``jobs`` at once, the longest ``chain`` first) and
    come back to the head when trained (it restores them from the run-cache). A free worker takes a waiting
    stage before the head's work unless that work may make a stage with a longer chain ready (Table 1's
    search before Table 6's row, not a Cityscapes-like row). A failed worker raises here; the executor behind
    ``start_worker`` lets the running ones end."""
    done: set[str] = set()
    checked: set[str] = set()
    waiting: list[str] = []  # stale training stages whose upstream is done
    running: dict[Future, str] = {}

    def dispatch(bar: float) -> None:  # the waiting stages with a chain of at least ``bar``, longest first
        waiting.sort(key=lambda s: -chain.get(s, 0.0))
        while waiting and len(running) < jobs and chain.get(waiting[0], 0.0) >= bar:
            stage = waiting.pop(0)
            running[start_worker(stage)] = stage

    while len(done) < len(order):
        ready = [s for s in order if s not in done and upstream[s] <= done]
        new = [s for s in ready if is_training(s) and s not in checked]
        checked.update(new)
        waiting += stale(new) if new else []
        # a free worker waits for the head only if the head's work may make a longer chain ready
        dispatch(max((chain.get(s, 0.0) for s in order if is_training(s) and s not in checked), default=0.0))
        head = [s for s in ready if s not in waiting and s not in running.values()]
        if head:  # also the rows the workers have trained: the head restores them from the run-cache
            run_head(head)
            done.update(head)
            continue
        dispatch(float("-inf"))
        if not running:
            raise ConfigError(f"no stage can run: {', '.join(s for s in order if s not in done)}")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            stage = running.pop(future)
            future.result()  # a failed worker raises here
            say(f"  {stage}: trained")


def collect_rows(root: str | Path, start_worker: Callable[[str, str], Future], jobs: int, pull: bool = False,
                 say: Callable[[str], None] = print) -> None:
    """Reproduce the pipeline in the head workspace ``root`` with every stale training stage trained by a
    worker (``start_worker(stage, commit)``, at most ``jobs`` at once, :func:`run_stages`), at a snapshot of
    the head's state taken as it starts; the head's ``dvc repro --single-item`` (``--pull`` from the remote
    for a cluster) restores the workers' rows from the run-cache and runs the rest (data, evaluations,
    tables) as soon as their inputs are there."""
    import networkx as nx

    from spatialflow_repro.repro_progress import PLAN_ENV, planned_stages, write_plan

    os.environ[PLAN_ENV] = str(write_plan(root, planned_stages(root)))  # the workers' stage banners number by it
    graph = stage_graph(root)
    order = [stage for generation in generations(root, graph) for stage in generation]
    upstream = {node.addressing: {s.addressing for s in nx.descendants(graph, node)} for node in graph.nodes}
    chain = critical_path(upstream, training_costs(root, [s for s in order if is_training(s)]))

    def run_head(stages: list[str]) -> None:
        _run(dvc("repro", *(["--pull"] if pull else []), "--single-item", *stages), root, capture=False)

    def start(stage: str) -> Future:
        if pull:  # the worker pulls what the head has made so far from the remote
            _run(dvc("push"), root)
        commit = snapshot(root)
        say(f"to a worker at {commit[:12]}: {stage}")
        return start_worker(stage, commit)

    run_stages(order, upstream, lambda stages: stale_stages(root, stages), run_head, start, jobs, chain, say)


def slot_cpus(slot: int, jobs: int) -> list[int]:
    """The CPUs of worker slot ``slot`` of ``jobs``: this process's CPUs in ``jobs`` equal blocks (all of them
    when there are fewer CPUs than slots). A row keeps to its block, so that a row of three single-threaded
    seeds does not take three quarters of two cores from the one-seed row beside it."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    size = len(cpus) // jobs
    return cpus[slot * size:(slot + 1) * size] if size else cpus


def keep_to_cpus(value: str | None) -> None:
    """Run this process and its children on the CPUs listed in ``value`` (``$SPATIALFLOW_WORKER_CPUS``,
    e.g. ``0,1``; nothing where it is unset or the system cannot pin)."""
    if value and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(cpu) for cpu in value.split(",")})
        except (ValueError, OSError) as error:
            raise ConfigError(f"${CPUS_ENV}={value!r}: not CPUs of this machine ({error})") from None


def train_rows_here(root: str | Path, jobs: int, gpus_per_job: int = 0, say: Callable[[str], None] = print) -> None:
    """The one-machine route: ``jobs`` training stages at a time, each in a git worktree of the head's state
    sharing its DVC cache and its training working area; on CPUs each on its own ``cpus / jobs`` CPUs
    (:func:`slot_cpus`) with as many threads, on GPUs each with its own ``gpus_per_job`` GPUs
    (``CUDA_VISIBLE_DEVICES``)."""
    root = Path(root).resolve()
    cache = _run(dvc("cache", "dir"), root).strip()
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(jobs):
        slots.put(slot)
    git_lock = threading.Lock()  # git worktree add / remove take locks of their own: one at a time
    logs = root / ".dvc" / "tmp" / "rows-logs"
    logs.mkdir(parents=True, exist_ok=True)

    def one(stage: str, commit: str) -> None:
        tree = root / ".dvc" / "tmp" / "rows" / stage.replace("@", "-")
        with git_lock:
            if tree.exists():
                _run(["git", "worktree", "remove", "--force", str(tree)], root)
            _run(["git", "worktree", "add", "--detach", str(tree), commit], root)
        slot = slots.get()
        try:
            _run(dvc("cache", "dir", "--local", cache), tree)
            _run(dvc("config", "--local", "cache.type", "reflink,hardlink,copy"), tree)
            (root / WORKING_AREA).mkdir(parents=True, exist_ok=True)
            (tree / WORKING_AREA).parent.mkdir(parents=True, exist_ok=True)
            (tree / WORKING_AREA).symlink_to(root / WORKING_AREA, target_is_directory=True)
            cpus = slot_cpus(slot, jobs)
            env = {**os.environ, "OMP_NUM_THREADS": str(len(cpus)), CPUS_ENV: ",".join(map(str, cpus)),
                   "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")}
            if gpus_per_job:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot * gpus_per_job + k) for k in range(gpus_per_job))
            log = logs / f"{stage.replace('@', '-')}.log"
            say(f"  {stage}: training on CPU(s) {env[CPUS_ENV]}, log {log}")
            with open(log, "w", encoding="utf-8") as out:
                status = subprocess.run([sys.executable, "-m", "spatialflow_repro", "train-stage", stage, "--commit",
                                         commit], cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT).returncode
            if status != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
                raise ConfigError(f"{stage}: the worker failed (status {status}; {log})" + (f": {tail[0]}" if tail else ""))
        finally:
            slots.put(slot)
            with git_lock:  # the worktree's outputs are in the shared cache, its checkpoints in data/runs
                _run(["git", "worktree", "remove", "--force", str(tree)], root)

    with ThreadPoolExecutor(jobs) as pool:  # on a failure, waits for the running rows before raising
        collect_rows(root, lambda stage, commit: pool.submit(one, stage, commit), jobs, say=say)


def remote_url(root: str | Path) -> str:
    """The head's default DVC remote, a local path made absolute (the workers run elsewhere)."""
    name = _run(dvc("remote", "default"), root).strip()
    if not name:
        raise ConfigError(f"{root}: no default DVC remote; the workers of a cluster push their rows to the "
                          "team's remote (dvc remote add -d ...)")
    url = _run(dvc("config", f"remote.{name}.url"), root).strip()  # the workspace's value, local config included
    if "://" not in url and not Path(url).is_absolute():  # relative to the config file, in .dvc/
        url = str((Path(root) / ".dvc" / url).resolve())
    return url


def clone_and_train(repo_url: str, commit: str, stage: str, workdir: str, remote: str,
                    runs_dir: str | None = None) -> str:
    """A cluster job: clone the head's repository at its snapshot into ``workdir`` and run the worker there
    (``dvc pull`` the upstream outputs from ``remote``, train, ``dvc push --run-cache``). ``runs_dir``: a
    shared folder for the training working area, so that a job killed and started again resumes."""
    tree = Path(workdir) / stage.replace("@", "-")
    _run(["git", "clone", "--quiet", "--no-checkout", repo_url, str(tree)], Path(workdir))
    _run(["git", "fetch", "--quiet", "origin", SNAPSHOT_REF], tree)
    _run(["git", "checkout", "--quiet", "--detach", commit], tree)
    _run(dvc("remote", "add", "--local", "--force", "--default", "head", remote), tree)
    if runs_dir:
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        (tree / WORKING_AREA).parent.mkdir(parents=True, exist_ok=True)
        (tree / WORKING_AREA).symlink_to(Path(runs_dir).resolve(), target_is_directory=True)
    _run([sys.executable, "-m", "spatialflow_repro", "train-stage", stage, "--commit", commit, "--push"], tree,
         capture=False)
    return stage


def train_rows_with_submitit(root: str | Path, folder: str | Path, workdir: str, timeout_min: int,
                             parallelism: int, slurm: dict | None = None, runs_dir: str | None = None,
                             say: Callable[[str], None] = print) -> None:
    """The cluster route: each stale training stage is one SLURM job (submitit; its local executor without
    SLURM), ``parallelism`` at a time, submitted as soon as its inputs are there, cloning the head's
    repository; the head pulls the rows from the DVC remote."""
    import submitit

    root = Path(root).resolve()
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        raise ConfigError("MLFLOW_TRACKING_URI: workers on other machines log to the team's MLflow server; set it "
                          "to that server's http(s):// address")

    remote = remote_url(root)

    executor = submitit.AutoExecutor(folder=str(folder))
    executor.update_parameters(timeout_min=timeout_min, **(slurm or {}))

    def start(stage: str, commit: str) -> Future:
        job = executor.submit(clone_and_train, str(root), commit, stage, workdir, remote, runs_dir)
        say(f"  {stage}: job {job.job_id} ({executor.cluster})")
        return waiting.submit(job.result)

    with ThreadPoolExecutor(parallelism) as waiting:  # one thread per job in flight waits for its result
        collect_rows(root, start, parallelism, pull=True, say=say)
