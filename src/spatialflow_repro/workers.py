"""Rows on many workers, collected in one workspace through DVC's run-cache.

A *worker* trains one training stage (``table1@``, ``train@``, ``train_pretrained@<row>``) in its own checkout
of the head's state, with ``dvc repro --single-item`` there. Its outputs and the stage's run-cache entry
reach the head through a cache both use (one machine) or the team's DVC remote (``dvc push --run-cache``;
a cluster). The *head* then runs ``dvc repro`` on that stage: "Stage ... is cached - skipping run, checking
out outputs": it trains nothing and writes the only ``dvc.lock`` (the workers' are thrown away, never
merged). DVC's DAG decides the order: the stages go in topological generations, a generation's stale
training stages go to the workers, then the head runs the whole generation.

- One machine (:func:`train_rows_here`): ``jobs`` git worktrees at a snapshot of the workspace (``git commit-
  tree``: edits and new files included, nothing in the workspace touched), sharing the head's DVC cache and its
  training working area ``data/runs`` (an interrupted row resumes), each row with ``cpus / jobs`` threads.
- A cluster (:func:`train_rows_with_submitit`): a SLURM array through submitit (its local executor where
  there is no SLURM); each job clones the head's repository at the snapshot (``refs/spatialflow/rows``) and
  runs ``python -m spatialflow_repro train-stage``, the one command any other scheduler can run too.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spatialflow.errors import ConfigError

TRAINING_STAGES = ("table1", "train", "train_pretrained")
SNAPSHOT_REF = "refs/spatialflow/rows"
WORKING_AREA = "data/runs"


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


def longest_first(root: str | Path, stages: list[str]) -> list[str]:
    """Training stages ordered by their estimated cost, largest first (so that no long row starts last and
    trains alone while the other workers idle); ties keep their order."""
    from spatialflow.utils.yaml_io import read_yaml
    from spatialflow_repro.rows import training_cost

    params = read_yaml(Path(root) / "params.yaml")
    return sorted(stages, key=lambda stage: -training_cost(stage.split("@", 1)[1], params))


def collect_rows(root: str | Path, run_workers: Callable[[list[str], str], None], pull: bool = False,
                 say: Callable[[str], None] = print) -> None:
    """Reproduce the pipeline in the head workspace ``root`` with every stale training stage trained by
    ``run_workers(stages, commit)``: generation by generation, the workers train, then the head's
    ``dvc repro`` (``--pull`` from the remote for a cluster) restores their rows from the run-cache and runs
    the rest (data, evaluations, tables)."""
    from spatialflow_repro.repro_progress import PLAN_ENV, planned_stages, write_plan

    os.environ[PLAN_ENV] = str(write_plan(root, planned_stages(root)))  # the workers' stage banners number by it
    for number, generation in enumerate(generations(root), start=1):
        training = longest_first(root, [s for s in stale_stages(root, generation) if is_training(s)])
        if training:
            commit = snapshot(root)
            if pull:  # the workers pull what the head has made so far from the remote
                _run(dvc("push"), root)
            say(f"generation {number}: {len(training)} training stage(s) to the workers at {commit[:12]}: "
                + ", ".join(training))
            run_workers(training, commit)
        _run(dvc("repro", *(["--pull"] if pull else []), "--single-item", *generation), root, capture=False)


def train_rows_here(root: str | Path, jobs: int, gpus_per_job: int = 0, say: Callable[[str], None] = print) -> None:
    """The one-machine route: ``jobs`` training stages at a time, each in a git worktree of the head's state
    sharing its DVC cache and its training working area; on CPUs each with ``cpus / jobs`` threads, on GPUs
    each with its own ``gpus_per_job`` GPUs (``CUDA_VISIBLE_DEVICES``)."""
    root = Path(root).resolve()
    cache = _run(dvc("cache", "dir"), root).strip()
    threads = max(1, (os.cpu_count() or 1) // jobs)
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
            env = {**os.environ, "OMP_NUM_THREADS": str(threads),
                   "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")}
            if gpus_per_job:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(slot * gpus_per_job + k) for k in range(gpus_per_job))
            log = logs / f"{stage.replace('@', '-')}.log"
            say(f"  {stage}: training ({threads} thread(s)), log {log}")
            with open(log, "w", encoding="utf-8") as out:
                status = subprocess.run([sys.executable, "-m", "spatialflow_repro", "train-stage", stage, "--commit",
                                         commit], cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT).returncode
            if status != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
                raise ConfigError(f"{stage}: the worker failed (status {status}; {log})" + (f": {tail[0]}" if tail else ""))
            say(f"  {stage}: trained")
        finally:
            slots.put(slot)
            with git_lock:  # the worktree's outputs are in the shared cache, its checkpoints in data/runs
                _run(["git", "worktree", "remove", "--force", str(tree)], root)

    def run_workers(stages: list[str], commit: str) -> None:
        with ThreadPoolExecutor(jobs) as pool:
            for future in [pool.submit(one, stage, commit) for stage in stages]:
                future.result()

    collect_rows(root, run_workers, say=say)


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
    """The cluster route: each stale training stage is one job of a SLURM array (submitit; its local
    executor without SLURM), cloning the head's repository; the head pulls the rows from the DVC remote."""
    import submitit

    root = Path(root).resolve()
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        raise ConfigError("MLFLOW_TRACKING_URI: workers on other machines log to the team's MLflow server; set it "
                          "to that server's http(s):// address")

    remote = remote_url(root)

    def run_workers(stages: list[str], commit: str) -> None:
        executor = submitit.AutoExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=timeout_min, slurm_array_parallelism=parallelism, **(slurm or {}))
        n = len(stages)
        jobs = executor.map_array(clone_and_train, [str(root)] * n, [commit] * n, stages, [workdir] * n,
                                  [remote] * n, [runs_dir] * n)
        say(f"  submitted {len(jobs)} job(s) ({executor.cluster}): {', '.join(j.job_id for j in jobs)}")
        for job in jobs:
            say(f"  {job.result()}: trained")

    collect_rows(root, run_workers, pull=True, say=say)
