"""MLflow tracking: param flattening, PQ metric names, tracking URI, and logs surviving an outage."""

from __future__ import annotations

import json
import socket
import tempfile

import pytest

from helpers.mlflow_server import MICRO_PROFILE, MICRO_ROWS, log_micro_like_runs, pq_result
from helpers.toy import toy_config, toy_factories
from spatialflow.engine.trainer import train
from spatialflow_repro import mlflow_client, tracking


def test_flatten_nested_config():
    assert mlflow_client.flatten({"train": {"lr": 0.1, "decay": [16, 19], "finetune": None}, "name": "r"}) == {
        "train.lr": 0.1, "train.decay": [16, 19], "train.finetune": None, "name": "r"}


def test_pq_metrics_names():
    metrics = {"All": {"pq": 40.9, "sq": 80.1, "rq": 49.6, "n": 133}, "Things": {"pq": 46.8, "sq": 81, "rq": 56,
               "n": 80}, "Stuff": {"pq": 31.9, "sq": 78, "rq": 40, "n": 53}, "per_class": {1: {"pq": 1.0}}}
    got = mlflow_client.pq_metrics(metrics)
    assert got["pq_all"] == 40.9 and got["pq_things"] == 46.8 and got["rq_stuff"] == 40.0
    assert got["n_all"] == 133.0 and len(got) == 12  # 3 groups x (pq, sq, rq, n); per_class left out


def test_default_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "pyproject.toml").write_text("[tool.kedro]\npackage_name = 'x'\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert mlflow_client.default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_client.default_tracking_uri() == "http://tracking.example:5000"


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_never_stops_training_and_logs_are_replayed(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    temporary = tmp_path / "tmp"  # where the callback stages its uploads: empty again once it is closed
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    down = f"http://127.0.0.1:{_unused_port()}"  # nothing listens there
    cfg = toy_config(tmp_path / "run", length=10, log_every=5)
    with pytest.warns(UserWarning, match="MLflow tracking at .* failed"):
        tracker = mlflow_client.MlflowCallback("engine-test", "row-a", tags={"table": "table2", "row": "a"},
                                          tracking_uri=down, close_retries=1)
        result = train(cfg, [tracker], **toy_factories())
        with pytest.warns(UserWarning, match="replay_pending"):
            pending = tracker.close()
    assert result.iterations == 10
    assert pending == tmp_path / "run" / "mlflow_pending.json"
    assert list(temporary.glob("spatialflow-mlflow-*")) == []  # config.yaml was copied next to the pending file
    saved = json.loads(pending.read_text())
    assert saved["run_id"] is None and saved["status"] == "FINISHED"
    assert sorted({m[3] for m in saved["metrics"] if m[0] == "loss/total"}) == [5, 10]

    uri = f"sqlite:///{tmp_path}/m.db"  # "the server is back": replay into a reachable store
    run_id = mlflow_client.replay_pending(pending, tracking_uri=uri)
    assert not pending.exists()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "row-a"
    assert run.data.tags["table"] == "table2" and run.data.tags["seed"] == "3"
    assert run.data.params["train.lr"] == "0.1"
    assert [m.step for m in client.get_metric_history(run_id, "loss/total")] == [5, 10]
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    assert (tmp_path / "mlruns").is_dir()  # artifacts next to the SQLite file, not under the current folder


@pytest.mark.parametrize("evaluation_first", [True, False])
def test_evaluation_pq_during_an_outage_is_kept_and_replayed_into_the_training_run(tmp_path, monkeypatch,
                                                                                   evaluation_first):
    """MLflow down for a row's training and its evaluation: the run never got an id, yet the val and
    test-dev PQ are kept in the evaluation's own pending files and land in the same run as the training's
    logs, whichever file is replayed first."""
    from mlflow.tracking import MlflowClient

    down = f"http://127.0.0.1:{_unused_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    monkeypatch.setattr(mlflow_client.time, "sleep", lambda seconds: None)  # close() retries without waiting
    row = MICRO_ROWS["t2_spatialflow"]
    with pytest.warns(UserWarning, match="replay_pending"):
        tracker = tracking.row_callback("t2_spatialflow", row, MICRO_PROFILE, 0, {"train": {"lr": 0.1}})
        tracker.output_dir = tmp_path / "seed0"
        tracker.log_metrics({"loss/total": 2.0}, step=4)
        training_pending = tracker.close()
    assert tracker.run_id is None
    summary = json.loads(json.dumps({"mlflow_run_id": tracker.run_id, "mlflow_run": tracker.run_reference()}))
    pending = {}
    for split, pq in (("val", (40.0, 48.0, 28.0)), ("test", (39.0, 47.0, 27.0))):
        predictions = tmp_path / f"{split}_predictions"
        predictions.mkdir()
        with pytest.warns(UserWarning, match="replay_pending"):
            tracking.log_evaluation(summary["mlflow_run_id"], split, {"metrics": pq_result(*pq)}, predictions,
                                    run_reference=summary["mlflow_run"])
        pending[split] = predictions / mlflow_client.PENDING_FILE
        saved = {m[0]: m[1] for m in json.loads(pending[split].read_text())["metrics"]}
        label = "val" if split == "val" else "test-dev"
        assert saved[f"{label}/PQ"] == pq[0] and saved[f"{label}/PQ_th"] == pq[1]

    uri = f"sqlite:///{tmp_path}/back.db"  # the server is back
    order = [pending["val"], training_pending, pending["test"]] if evaluation_first else \
        [training_pending, pending["val"], pending["test"]]
    run_ids = {mlflow_client.replay_pending(path, tracking_uri=uri) for path in order}
    assert len(run_ids) == 1 and not any(path.exists() for path in order)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_ids.pop())
    assert run.info.run_name == "t2_spatialflow/seed0" and run.info.status == "FINISHED"
    assert run.data.metrics["val/PQ"] == 40.0 and run.data.metrics["test-dev/PQ"] == 39.0
    assert run.data.metrics["pq_all_test"] == 39.0 and run.data.metrics["loss/total"] == 2.0
    assert run.data.tags["row"] == "t2_spatialflow" and run.data.tags["dvc_stage"] == "train@t2_spatialflow"
    parent = client.get_run(run.data.tags[mlflow_client.PARENT_RUN_TAG])
    assert parent.info.run_name == "table2"
    assert len(client.search_runs([run.info.experiment_id])) == 2  # the row's run and its table's parent


def test_rejected_param_is_dropped_and_later_metrics_still_arrive(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = mlflow_client.MlflowCallback("engine-test", "conflict", params={"train.lr": "0.1"}, tracking_uri=uri)
    tracker.log_params({"train.lr": "0.2"})  # MLflow params are immutable: the server answers 400
    with pytest.warns(UserWarning, match=r"MLflow rejected params \['train.lr'\]"):
        tracker.log_metrics({"loss/total": 1.5}, step=1)
    assert tracker.close() is None
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.data.params["train.lr"] == "0.1" and run.data.metrics["loss/total"] == 1.5


# ------------------------------------------------------------------ what the MLflow UI shows


def test_resolved_params_hold_every_switch_of_the_preset():
    params = mlflow_client.resolved_params({"model": {"preset": "+reg_cls", "depth": 18}, "train": {"lr": 0.1}})
    assert params["model.preset"] == "+reg_cls" and params["model.depth"] == 18
    assert params["model.subnets"] is True and params["model.flow_reg_cls"] is True
    assert params["model.flow_reg_stuff"] is False and params["model.dcn"] is False
    assert params["model.fpn_channels"] == 256 and params["train.lr"] == 0.1  # defaults resolved too
    unknown = {"model": {"preset": "no-such-preset"}}
    assert mlflow_client.resolved_params(unknown) == {"model.preset": "no-such-preset"}  # logged as written


def test_paper_metrics_per_split():
    got = tracking.paper_metrics(pq_result(40.0, 48.0, 28.0), "val")
    assert got == {"val/PQ": 40.0, "val/PQ_th": 48.0, "val/PQ_st": 28.0, "val/SQ": 80.0, "val/RQ": 50.0}
    assert set(tracking.paper_metrics(pq_result(1.0, 2.0, 3.0), "test")) == {
        "test-dev/PQ", "test-dev/PQ_th", "test-dev/PQ_st", "test-dev/SQ", "test-dev/RQ"}
    assert tracking.paper_metrics({}, "val") == {}  # test-dev without ground truth: no numbers


def test_rows_are_comparable_in_the_mlflow_ui(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run_ids = log_micro_like_runs(tmp_path / "runs")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("spatialflow-micro")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    description = experiment.tags["mlflow.note.content"]
    assert "micro" in description and mlflow_client.git_commit() in description

    parents = {run.data.tags["spatialflow.parent"]: run for run in client.search_runs(
        [experiment.experiment_id], filter_string="tags.`spatialflow.parent` != ''")}
    assert set(parents) == {"table1", "table2"}  # one parent per table, even with two Table 2 rows
    assert all(run.info.status == "FINISHED" for run in parents.values())
    runs = {name: client.get_run(run_id) for name, run_id in run_ids.items()}
    assert runs["t1_lambda_0_25"].data.tags["mlflow.parentRunId"] == parents["table1"].info.run_id
    for name in ("t2_baseline", "t2_spatialflow"):
        assert runs[name].data.tags["mlflow.parentRunId"] == parents["table2"].info.run_id

    flow = runs["t2_spatialflow"]
    assert {k: flow.data.tags[k] for k in ("table", "row", "preset", "profile", "seed")} == {
        "table": "2,4", "row": "t2_spatialflow", "preset": "spatialflow", "profile": "micro", "seed": "0"}
    assert runs["t2_baseline"].data.params["model.flow_stuff_mask"] == "False"
    assert flow.data.params["model.flow_stuff_mask"] == "True" and flow.data.params["model.fpn_channels"] == "32"
    assert flow.data.metrics["val/PQ"] == 23.75 and flow.data.metrics["val/PQ_st"] == 18.0
    assert flow.data.metrics["test-dev/PQ"] == 22.75 and flow.data.metrics["pq_all_test"] == 22.75
    assert "test-dev/PQ" not in runs["t2_baseline"].data.metrics
    assert [m.step for m in client.get_metric_history(flow.info.run_id, "loss/total")] == [1, 2, 3, 4]
    for name in ("t2_baseline", "t2_spatialflow"):
        figures = [a.path for a in client.list_artifacts(run_ids[name], "figures")]
        assert figures == ["figures/panoptic_overlays.png"]
    assert client.list_artifacts(run_ids["t1_lambda_0_25"], "figures") == []


def test_closing_removes_only_the_files_the_callback_staged(tmp_path, monkeypatch):
    """A file someone else put in the staging folder survives close(), and so does the folder with it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    tracker = mlflow_client.MlflowCallback("engine-test", "row-b", tracking_uri=f"sqlite:///{tmp_path}/m.db")
    staged = tracker._staged("metrics.json")
    staged.write_text("{}")
    stranger = staged.parent / "weights.pt"
    stranger.write_text("trained")
    tracker.close()
    assert not staged.exists() and stranger.read_text() == "trained"
    with pytest.raises(ValueError, match="not one of the staged files"):
        tracker._staged("weights.pt")
