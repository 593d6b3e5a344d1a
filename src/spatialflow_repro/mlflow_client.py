"""The MLflow client of the project: a buffered run, resilient to tracking-server outages.

``MlflowCallback`` plugs into ``spatialflow.engine.trainer.train`` (the model package knows nothing of
MLflow). It logs the flattened config as params (the model preset resolved into every switch), losses
and learning rate at every log step, timing at the end, and (through ``log_row_results``) the final
PQ/SQ/RQ and artifacts. Tags: table, row, preset, profile, seed, git commit, DVC stage.

How the grid's rows are named, tagged and nested in MLflow is ``spatialflow_repro.tracking``'s business.

Nothing here ever raises into training: every MLflow call is buffered; when the server is unreachable
the callback warns, keeps the data (with the original timestamps and steps) and retries later; at
``close()`` it retries a few times and, if the server is still down, writes everything to a
``mlflow_pending.json`` that ``replay_pending`` uploads once the server is back. A run that could not even
be created yet has a run key (tag ``spatialflow.run_key``): what is logged to it later (the evaluation's
PQ, after training during the same outage) carries the key, and whichever pending file is replayed first
creates the run, the others find it by its key.

Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from spatialflow.engine.config import ExperimentConfig, experiment_to_dict, experiment_to_yaml
from spatialflow.engine.trainer import Callback, TrainResult
from spatialflow.utils.atomic import atomic_write_json

PENDING_FILE = "mlflow_pending.json"
STAGED_FILES = ("config.yaml", "metrics.json")  # what a callback writes to its staging folder to upload
PARENT_RUN_TAG = "mlflow.parentRunId"  # nests a run under another in the runs table
PARENT_NAME_TAG = "spatialflow.parent"  # marks the parent run of one table: its value is the table name
RUN_KEY_TAG = "spatialflow.run_key"  # identifies a run before MLflow has given it an id (outages)
_MAX_PARAM_LENGTH = 6000
_BATCH = 100  # MLflow accepts at most 100 params/tags and 1000 metrics per log_batch

# Fail fast on an unreachable server (MLflow's defaults retry for minutes); a user's own setting wins.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def _sqlite_schema_lock(uri: str):
    """Processes that open a new SQLite store at once (a row's seeds in parallel) race to create its tables
    ("table ... already exists"); a file lock next to the database lets one create them first."""
    import contextlib

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{database}.lock", timeout=120)


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The Kedro project root (the folder with a pyproject.toml that has [tool.kedro]) above ``start``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.kedro]" in pyproject.read_text(encoding="utf-8"):
            return folder
    return here


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the SQLite file ``mlflow.db`` at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit(folder: str | os.PathLike | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or repo_root(), capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists and None stay values."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def resolved_params(config: dict) -> dict[str, Any]:
    """``flatten(config)`` with the model section resolved: ``model.preset`` plus every field of the
    SpatialFlowConfig it builds (``model.subnets``, ``model.flow_reg_cls``, ...), so the compare view shows
    which switch a row adds. A model section that does not resolve is logged as written."""
    from spatialflow.models.config import config_to_dict, model_config

    model = dict(config.get("model") or {})
    preset = model.pop("preset", None)
    if preset is None:
        return flatten(config)
    try:
        resolved = config_to_dict(model_config(preset, **model))
    except Exception:  # noqa: BLE001 - logging must never stop training; the config was validated before
        return flatten(config)
    return flatten({**config, "model": {"preset": preset, **resolved}})


def pq_metrics(metrics: dict) -> dict[str, float]:
    """pq_compute's {"All": {"pq","sq","rq","n"}, "Things", "Stuff", ...} -> {"pq_all", "sq_things", ...};
    flat numeric entries are kept as they are."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key in ("All", "Things", "Stuff") and isinstance(value, dict):
            for name in ("pq", "sq", "rq", "n"):
                if name in value:
                    out[f"{name}_{key.lower()}"] = float(value[name])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class MlflowCallback(Callback):
    """One MLflow run for one training row (see the module docstring). Use as a context manager, or call
    ``close()``: the run ends FINISHED, or FAILED when the block raised."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, tracking_uri: str | None = None,
                 retry_interval_s: float = 30.0, close_retries: int = 3, close_wait_s: float = 5.0,
                 run_id: str | None = None, experiment_tags: dict[str, str] | None = None,
                 parent: dict[str, Any] | None = None, run_key: str | None = None) -> None:
        """``experiment_tags`` are set on the experiment whenever a run is created in it; ``parent``
        ({"name": "table2", "tags": {...}}) nests the run under that experiment's run of this name
        (created once, FINISHED at once). ``run_key``: log into the run of the experiment that has this key
        (created if none has it yet); a new run gets a fresh key."""
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.retry_interval_s = retry_interval_s
        self.close_retries = close_retries
        self.close_wait_s = close_wait_s
        self.output_dir: Path | None = None
        self.pending_path: Path | None = None
        self._staging: Path | None = None  # a temporary folder for files to upload, made on first use
        self._client = None
        self._next_try = 0.0
        self._warned = False
        self.state: dict[str, Any] = {
            "experiment": experiment, "run_name": run_name, "run_id": run_id, "status": None,
            "tags": {"git_commit": git_commit(), **{k: str(v) for k, v in (tags or {}).items()}},
            "params": {}, "metrics": [], "artifacts": [], "tags_dirty": False,
            "experiment_tags": dict(experiment_tags or {}), "parent": parent, "run_key": None,
        }
        if run_id is None:
            self.state["run_key"] = run_key or uuid.uuid4().hex
            self.state["tags"][RUN_KEY_TAG] = self.state["run_key"]
        self.state["tags"].setdefault("dvc_stage", os.environ.get("DVC_STAGE", "none"))
        self.state["tags"]["mlflow.source.git.commit"] = self.state["tags"]["git_commit"]
        self.log_params(params or {})
        if run_key is None:
            self._flush()  # create the run now if the server is there


    @classmethod
    def attach(cls, run_id: str | None, tracking_uri: str | None = None,
               run_reference: dict | None = None) -> MlflowCallback:
        """Log more into an existing run (e.g. evaluation after training), with the same outage handling;
        ``close(status=None)`` then leaves the run's status as it is. Without ``run_id`` (MLflow was down
        for the whole training), the run is the one of ``run_reference`` (``run_reference()`` of the
        training's callback): found by its run key, or created with it, whichever side is sent first."""
        if run_id is not None:
            callback = cls(experiment="", run_name="", tracking_uri=tracking_uri, run_id=run_id)
            callback.state["tags"] = {}  # only tags set from now on are sent: the run keeps its own
            return callback
        callback = cls(run_reference["experiment"], run_reference["run_name"], tracking_uri=tracking_uri,
                       run_key=run_reference["run_key"])
        callback.state["tags"] = {RUN_KEY_TAG: run_reference["run_key"]}  # the training run sets the others
        return callback

    # ------------------------------------------------------------------ training hooks
    def on_train_start(self, cfg: ExperimentConfig) -> None:
        self.output_dir = Path(cfg.output_dir)
        if "seed" not in self.state["tags"]:
            self.set_tags({"seed": cfg.train.seed})
        self.log_params(resolved_params(experiment_to_dict(cfg)))
        config_file = self._staged("config.yaml")
        config_file.write_text(experiment_to_yaml(cfg), encoding="utf-8")
        self.state["artifacts"].append([str(config_file), None])
        self._flush()

    def on_log(self, iteration: int, metrics: dict[str, float]) -> None:
        self.log_metrics(metrics, step=iteration)

    def on_train_end(self, result: TrainResult) -> None:
        self.log_metrics({"train_seconds": result.seconds, "iterations_per_second": result.iterations_per_second,
                          "iterations": float(result.iterations)}, step=result.iterations)
        self.set_tags({"final_model": result.final_model})
        self._flush(force=True)

    # ------------------------------------------------------------------ direct logging
    @property
    def run_id(self) -> str | None:
        return self.state["run_id"]

    def run_reference(self) -> dict[str, str | None]:
        """What finds this run later even if MLflow has not created it yet (see :func:`log_evaluation`)."""
        return {"experiment": self.state["experiment"], "run_name": self.state["run_name"],
                "run_key": self.state["run_key"], "run_id": self.state["run_id"]}

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.state["tags"].update({k: str(v) for k, v in tags.items()})
        self.state["tags_dirty"] = True

    def log_params(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            self.state["params"][key] = str(value)[:_MAX_PARAM_LENGTH]

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self.state["metrics"].append([key, float(value), now, int(step)])
        self._flush()

    def log_artifacts(self, paths: list[str | os.PathLike], artifact_path: str | None = None) -> None:
        for path in paths:
            self.state["artifacts"].append([str(Path(path).resolve()), artifact_path])
        self._flush()

    def log_row_results(self, metrics: dict, artifacts: list[str | os.PathLike] = (),
                        timing: dict[str, float] | None = None) -> None:
        """Final PQ/SQ/RQ (All/Things/Stuff) and timing as metrics; the metrics as ``metrics.json`` plus the
        given files (e.g. a few prediction PNGs) as artifacts under ``results/``."""
        self.log_metrics({**pq_metrics(metrics), **(timing or {})})
        metrics_file = self._staged("metrics.json")
        metrics_file.write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
        self.log_artifacts([metrics_file, *artifacts], artifact_path="results")

    # ------------------------------------------------------------------ end of run
    def close(self, status: str = "FINISHED") -> Path | None:
        """End the run: retry what is still buffered; write ``mlflow_pending.json`` if the server stays
        down (returns its path; None when everything reached MLflow)."""
        self.state["status"] = status
        for attempt in range(self.close_retries):
            if self._flush(force=True):
                self._remove_staging()
                return None
            if attempt + 1 < self.close_retries:
                time.sleep(self.close_wait_s)
        pending = self._write_pending()
        self._remove_staging()  # _write_pending copied what is staged next to the pending file
        return pending

    def _staged(self, name: str) -> Path:
        """``name`` (one of :data:`STAGED_FILES`) in this run's staging folder (created on first use; its files
        removed when the run is closed)."""
        if name not in STAGED_FILES:
            raise ValueError(f"{name!r} is not one of the staged files {STAGED_FILES}")
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="spatialflow-mlflow-"))
        return self._staging / name

    def _remove_staging(self) -> None:
        """Remove the files this callback staged itself (uploaded, or copied next to the pending file), then
        the folder if it is empty: nothing else is ever deleted."""
        if self._staging is not None:
            for name in STAGED_FILES:
                (self._staging / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something else is in it, so it stays
                self._staging.rmdir()
            self._staging = None

    def __enter__(self) -> MlflowCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("FAILED" if exc_type is not None else "FINISHED")

    # ------------------------------------------------------------------ internals
    def _flush(self, force: bool = False) -> bool:
        """Send what is buffered. True when nothing is left; never raises."""
        if not force and time.monotonic() < self._next_try:
            return False
        try:
            _send(self._get_client(), self.state)
        except Exception as exc:  # noqa: BLE001 - any tracking failure must leave training alone
            self._next_try = time.monotonic() + self.retry_interval_s
            if not self._warned:
                warnings.warn(f"MLflow tracking at {self.tracking_uri} failed ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); training goes on, logs are kept and retried", stacklevel=2)
                self._warned = True
            return False
        if self._warned:
            warnings.warn(f"MLflow tracking at {self.tracking_uri} is back; buffered logs sent", stacklevel=2)
            self._warned = False
        return True

    def _get_client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            with _sqlite_schema_lock(self.tracking_uri):
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _write_pending(self) -> Path:
        folder = self.output_dir or Path.cwd()
        path = folder / PENDING_FILE
        state = dict(self.state)
        # artifacts in our temporary staging folder must survive: copy them next to the pending file
        kept = folder / "mlflow_pending_artifacts"
        artifacts = []
        for local, artifact_path in state["artifacts"]:
            if self._staging is not None and Path(local).parent == self._staging:
                kept.mkdir(parents=True, exist_ok=True)
                local = str(shutil.copy2(local, kept / Path(local).name))
            artifacts.append([local, artifact_path])
        state["artifacts"] = artifacts
        state["tracking_uri"] = self.tracking_uri
        atomic_write_json(path, state)
        warnings.warn(f"MLflow still unreachable: run logs saved to {path}; upload them later with "
                      f"spatialflow_repro.mlflow_client.replay_pending('{path}')", stacklevel=2)
        self.pending_path = path
        return path


def _send(client, state: dict) -> None:
    """Push the buffered state to MLflow, removing each part from ``state`` once it is stored."""
    from mlflow.entities import Metric, Param, RunTag

    if state["run_id"] is None:
        experiment_id = _experiment_id(client, state["experiment"], state.get("experiment_tags") or {})
        tags = dict(state["tags"])
        if state.get("parent"):
            tags[PARENT_RUN_TAG] = _parent_run_id(client, experiment_id, state["parent"])
        found = _run_with_key(client, experiment_id, state.get("run_key"))
        if found is None:
            state["run_id"] = client.create_run(experiment_id, run_name=state["run_name"], tags=tags).info.run_id
            state["tags_dirty"] = False
        else:  # logged to during the same outage by another process, replayed first
            state["run_id"], state["tags"], state["tags_dirty"] = found, tags, True
    run_id = state["run_id"]
    if state.get("tags_dirty", True):
        tags = [RunTag(k, v) for k, v in state["tags"].items()]
        for i in range(0, len(tags), _BATCH):
            client.log_batch(run_id, tags=tags[i:i + _BATCH])
        state["tags_dirty"] = False
    while state["params"]:
        chunk = dict(list(state["params"].items())[:_BATCH])
        _rejected_is_dropped(lambda: client.log_batch(run_id, params=[Param(k, v) for k, v in chunk.items()]),
                             f"params {sorted(chunk)[:5]}")
        for key in chunk:
            del state["params"][key]
    while state["metrics"]:
        chunk = state["metrics"][:1000]
        _rejected_is_dropped(
            lambda: client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in chunk]),
            f"metrics {sorted({m[0] for m in chunk})[:5]}")
        del state["metrics"][:len(chunk)]
    while state["artifacts"]:
        local, artifact_path = state["artifacts"][0]
        client.log_artifact(run_id, local, artifact_path)
        state["artifacts"].pop(0)
    if state["status"] is not None:
        client.set_terminated(run_id, state["status"])
        state["status"] = None


def _experiment_id(client, name: str, tags: dict[str, str]) -> str:
    """The experiment's id (created if missing), with ``tags`` set on it (the description follows the
    latest commit that logged a run)."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = (experiment.experiment_id if experiment else
                     client.create_experiment(name, _artifact_location(client)))
    for key, value in tags.items():
        client.set_experiment_tag(experiment_id, key, value)
    return experiment_id


def _run_with_key(client, experiment_id: str, run_key: str | None) -> str | None:
    """The id of the experiment's (oldest) run tagged with ``run_key``; None if there is none."""
    if not run_key:
        return None
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'")
    return min(runs, key=lambda run: (run.info.start_time, run.info.run_id)).info.run_id if runs else None


def _parent_runs(client, experiment_id: str, name: str) -> list:
    """The experiment's parent runs named ``name``, oldest first."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_NAME_TAG}` = '{name}'")
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def _parent_run_id(client, experiment_id: str, parent: dict[str, Any]) -> str:
    """The id of the experiment's parent run ``parent["name"]``, created (and FINISHED) when missing. Two
    processes creating it at once both keep the oldest one; the newer is deleted by its creator."""
    found = _parent_runs(client, experiment_id, parent["name"])
    if found:
        return found[0].info.run_id
    tags = {PARENT_NAME_TAG: parent["name"], **{k: str(v) for k, v in (parent.get("tags") or {}).items()}}
    created = client.create_run(experiment_id, run_name=parent["name"], tags=tags).info.run_id
    client.set_terminated(created, "FINISHED")
    oldest = _parent_runs(client, experiment_id, parent["name"])[0].info.run_id
    if oldest != created:
        client.delete_run(created)
    return oldest


def _rejected_is_dropped(call, what: str) -> None:
    """Run an MLflow call; a request the server rejects as invalid (HTTP 4xx, e.g. a param re-logged with
    another value) is dropped with a warning instead of blocking the queue forever. Outages still raise."""
    from mlflow.exceptions import MlflowException

    try:
        call()
    except MlflowException as exc:
        if not 400 <= exc.get_http_status_code() < 500:
            raise
        warnings.warn(f"MLflow rejected {what}: {str(exc)[:300]}; dropped", stacklevel=3)


def _artifact_location(client) -> str | None:
    """With a SQLite store, artifacts go to ``mlruns/`` next to the database file (MLflow's default is
    ``./mlruns`` under whatever the current folder is); servers choose their own location."""
    uri = str(client.tracking_uri)
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
    return None


def replay_pending(path: str | os.PathLike, tracking_uri: str | None = None) -> str:
    """Upload a ``mlflow_pending.json`` written during an outage; returns the MLflow run id.

    Raises if MLflow is still unreachable (the file is kept, so the call can simply be repeated)."""
    from mlflow.tracking import MlflowClient

    path = Path(path)
    state = json.loads(path.read_text(encoding="utf-8"))
    uri = tracking_uri or state.pop("tracking_uri", None) or default_tracking_uri()
    state.pop("tracking_uri", None)
    try:
        _send(MlflowClient(tracking_uri=uri), state)
    finally:
        if state["run_id"] is not None and (state["metrics"] or state["params"] or state["artifacts"]
                                            or state["status"]):
            atomic_write_json(path, {**state, "tracking_uri": uri})  # keep progress for the next try
    path.unlink()
    return state["run_id"]
