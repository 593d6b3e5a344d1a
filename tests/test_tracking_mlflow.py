"""MLflow tracking: param flattening, PQ metric names, tracking URI, and logs surviving an outage."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from spatialflow.engine.trainer import train
from spatialflow_repro import tracking
from test_engine_toy import toy_config, toy_factories


def test_flatten_nested_config():
    assert tracking.flatten({"train": {"lr": 0.1, "decay": [16, 19], "finetune": None}, "name": "r"}) == {
        "train.lr": 0.1, "train.decay": [16, 19], "train.finetune": None, "name": "r"}


def test_pq_metrics_names():
    metrics = {"All": {"pq": 40.9, "sq": 80.1, "rq": 49.6, "n": 133}, "Things": {"pq": 46.8, "sq": 81, "rq": 56,
               "n": 80}, "Stuff": {"pq": 31.9, "sq": 78, "rq": 40, "n": 53}, "per_class": {1: {"pq": 1.0}}}
    got = tracking.pq_metrics(metrics)
    assert got["pq_all"] == 40.9 and got["pq_things"] == 46.8 and got["rq_stuff"] == 40.0
    assert got["n_all"] == 133.0 and len(got) == 12  # 3 groups x (pq, sq, rq, n); per_class left out


def test_default_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "pyproject.toml").write_text("[tool.kedro]\npackage_name = 'x'\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.default_tracking_uri() == "http://tracking.example:5000"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_never_stops_training_and_logs_are_replayed(tmp_path):
    from mlflow.tracking import MlflowClient

    down = f"http://127.0.0.1:{_unused_port()}"  # nothing listens there
    cfg = toy_config(tmp_path / "run", length=10, log_every=5)
    with pytest.warns(UserWarning, match="MLflow tracking at .* failed"):
        tracker = tracking.MlflowCallback("engine-test", "row-a", tags={"table": "table2", "row": "a"},
                                          tracking_uri=down, close_retries=1)
        result = train(cfg, [tracker], **toy_factories())
        with pytest.warns(UserWarning, match="replay_pending"):
            pending = tracker.close()
    assert result.iterations == 10
    assert pending == tmp_path / "run" / "mlflow_pending.json"
    saved = json.loads(pending.read_text())
    assert saved["run_id"] is None and saved["status"] == "FINISHED"
    assert sorted({m[3] for m in saved["metrics"] if m[0] == "loss/total"}) == [5, 10]

    uri = f"sqlite:///{tmp_path}/m.db"  # "the server is back": replay into a reachable store
    run_id = tracking.replay_pending(pending, tracking_uri=uri)
    assert not pending.exists()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "row-a"
    assert run.data.tags["table"] == "table2" and run.data.tags["seed"] == "3"
    assert run.data.params["train.lr"] == "0.1"
    assert [m.step for m in client.get_metric_history(run_id, "loss/total")] == [5, 10]
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    assert (tmp_path / "mlruns").is_dir()  # artifacts next to the SQLite file, not under the current folder


def test_rejected_param_is_dropped_and_later_metrics_still_arrive(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = tracking.MlflowCallback("engine-test", "conflict", params={"train.lr": "0.1"}, tracking_uri=uri)
    tracker.log_params({"train.lr": "0.2"})  # MLflow params are immutable: the server answers 400
    with pytest.warns(UserWarning, match=r"MLflow rejected params \['train.lr'\]"):
        tracker.log_metrics({"loss/total": 1.5}, step=1)
    assert tracker.close() is None
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.data.params["train.lr"] == "0.1" and run.data.metrics["loss/total"] == 1.5
