"""MLflow for real: a local `mlflow server`, a tiny training row logged to it and read back; then an
outage in the middle of a run; then `make mlflow-ui` (spatialflow_repro.mlflow_ui) and the links it prints."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.mlflow_server import Server, free_port
from helpers.signals import ctrl_c_as_in_a_terminal
from helpers.toy import toy_config, toy_factories
from spatialflow.engine.trainer import Callback, train
from spatialflow_repro import mlflow_client, mlflow_ui


def _env_seeing_this_path() -> dict:
    """The environment of a child Python that imports what the tests import."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_training_row_is_logged_and_read_back(server, tmp_path):
    from mlflow.tracking import MlflowClient

    png = tmp_path / "pred_0001.png"
    png.write_bytes(b"\x89PNG fake bytes for the artifact test")
    cfg = toy_config(tmp_path / "run", length=20, log_every=5)
    tags = {"table": "table2", "row": "spatialflow", "profile": "tiny", "dvc_stage": "train@table2-spatialflow"}
    with mlflow_client.MlflowCallback("engine-test", "table2/spatialflow", tags=tags, tracking_uri=server.uri) as tracker:
        result = train(cfg, [tracker], **toy_factories())
        pq = {"All": {"pq": 40.9, "sq": 80.0, "rq": 51.1, "n": 3}, "Things": {"pq": 46.8, "sq": 81.0, "rq": 57.8,
              "n": 2}, "Stuff": {"pq": 31.9, "sq": 78.0, "rq": 40.9, "n": 1}}
        tracker.log_row_results(pq, artifacts=[png], timing={"eval_seconds": 1.5})

    client = MlflowClient(tracking_uri=server.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    for key, value in {**tags, "seed": "3"}.items():
        assert run.data.tags[key] == value
    assert len(run.data.tags["git_commit"]) in (40, 7) or run.data.tags["git_commit"] == "unknown"
    params = run.data.params
    assert params["train.lr"] == "0.1" and params["train.batch_size"] == "2" and params["model.preset"] == "baseline"
    assert params["run.log_every"] == "5"  # run settings are logged too (never part of the identity)
    history = client.get_metric_history(tracker.run_id, "loss/total")
    assert [m.step for m in history] == [5, 10, 15, 20]
    lr = {m.step: m.value for m in client.get_metric_history(tracker.run_id, "lr")}
    # lr used by iteration 5 (index 4): 0.1 * (0.1 + 0.9 * 4/5) = 0.082; after decay at 15: 0.01
    assert lr[5] == pytest.approx(0.082) and lr[10] == pytest.approx(0.1) and lr[20] == pytest.approx(0.01)
    assert run.data.metrics["pq_all"] == 40.9 and run.data.metrics["pq_stuff"] == 31.9
    assert run.data.metrics["iterations"] == 20 and run.data.metrics["iterations_per_second"] > 0
    assert run.data.metrics["train_seconds"] == pytest.approx(result.seconds)
    top = sorted(a.path for a in client.list_artifacts(tracker.run_id))
    assert top == ["config.yaml", "results"]
    assert sorted(a.path for a in client.list_artifacts(tracker.run_id, "results")) == [
        "results/metrics.json", "results/pred_0001.png"]
    config_copy = client.download_artifacts(tracker.run_id, "config.yaml", str(tmp_path / "dl"))
    assert "lr: 0.1" in Path(config_copy).read_text()


@pytest.mark.slow
def test_server_outage_mid_run_loses_nothing(server, tmp_path):
    from mlflow.tracking import MlflowClient

    class StopServerAt(Callback):
        def on_log(self, iteration, metrics):
            if iteration == 5:
                server.stop()

    cfg = toy_config(tmp_path / "run", length=20, log_every=5)
    tracker = mlflow_client.MlflowCallback("engine-test", "outage", tracking_uri=server.uri, close_retries=1)
    with pytest.warns(UserWarning, match="MLflow tracking at .* failed"):
        # StopServerAt runs first: the step-5 logs already meet a dead server
        result = train(cfg, [StopServerAt(), tracker], **toy_factories())
    assert result.iterations == 20 and (tmp_path / "run" / "model_final.pt").is_file()

    server.start()  # back (same store, same port)
    with pytest.warns(UserWarning, match="is back"):
        assert tracker.close() is None  # everything buffered went through
    client = MlflowClient(tracking_uri=server.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(tracker.run_id, "loss/total")] == [5, 10, 15, 20]
    assert run.data.params["train.length"] == "20"
    assert run.data.metrics["iterations"] == 20


def test_runs_table_link_opens_the_model_training_view():
    assert mlflow_ui.runs_table_link("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning")


def test_a_server_that_stops_before_answering_is_one_line():
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(mlflow_ui.UIError, match=r"^mlflow ui stopped \(exit code 3\) before answering on "
                                                r"http://127.0.0.1:1; is the port taken\?"):
        mlflow_ui.wait_until_answers("http://127.0.0.1:1", dead, timeout_s=5)


def _output_of(proc: subprocess.Popen) -> queue.Queue[str]:
    """``proc``'s output lines as they come (a thread drains the pipe, so the process never blocks on it)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    return lines


def _drain(lines: queue.Queue[str]) -> str:
    text = []
    while not lines.empty():
        text.append(lines.get())
    return "".join(text)


def _lines_until(lines: queue.Queue[str], marker: str, timeout_s: float) -> list[str]:
    """Lines of the output up to the first one that holds ``marker`` (or all of them at the timeout)."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
        if marker in seen[-1]:
            break
    return seen


@pytest.mark.slow
def test_mlflow_ui_prints_the_runs_table_link_of_each_experiment_with_runs(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(tracking_uri=uri)
    with_runs = client.create_experiment("spatialflow-tiny", artifact_location=str(tmp_path / "art"))
    client.create_run(with_runs, run_name="t2_baseline/seed0")
    client.create_experiment("spatialflow-empty", artifact_location=str(tmp_path / "art2"))
    port = free_port()
    env = _env_seeing_this_path()
    proc = subprocess.Popen([sys.executable, "-m", "spatialflow_repro.mlflow_ui", "--port", str(port),
                             "--backend-store-uri", uri], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal)
    lines = _output_of(proc)
    try:
        link = f"http://127.0.0.1:{port}/#/experiments/{with_runs}/runs?workflowType=machine_learning"
        output = "".join(_lines_until(lines, link, timeout_s=180))
        assert f"  spatialflow-tiny  {link}" in output, output[-3000:]
        assert "spatialflow-empty" not in output and "Default" not in output  # no runs, no link
        assert mlflow_ui.answers(f"http://127.0.0.1:{port}")
    finally:
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: the module stops the server it started
        try:
            code = proc.wait(timeout=120)  # stop(): 30 s of SIGTERM, then SIGKILL; slower on a loaded machine
        except subprocess.TimeoutExpired:  # say where it hangs (faulthandler), then stop it
            os.kill(proc.pid, signal.SIGUSR2)
            time.sleep(2)
            os.kill(proc.pid, signal.SIGKILL)
            pytest.fail("python -m spatialflow_repro.mlflow_ui still ran 120 s after Ctrl-C; its output since "
                        "the link, with its threads' stacks:\n" + _drain(lines)[-6000:])
    assert code == 0, _drain(lines)[-3000:]
    assert not mlflow_ui.answers(f"http://127.0.0.1:{port}")


# A SIGINT the kernel hands to another thread than the main one: the main thread blocks it, one other
# thread (as MLflow's client starts them) does not.
_SIGINT_ON_ANOTHER_THREAD = """
import signal, subprocess, sys, threading, time
from spatialflow_repro.mlflow_ui import wait_while_running
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
print("waiting", flush=True)
try:
    wait_while_running(server) if sys.argv[1] == "poll" else server.wait()
except KeyboardInterrupt:
    print("stopped by Ctrl-C", flush=True)
finally:
    server.kill()
"""


@pytest.mark.parametrize("how", ["poll", "blocking wait"])
def test_ctrl_c_stops_the_ui_whichever_thread_receives_it(how):
    proc = subprocess.Popen([sys.executable, "-c", _SIGINT_ON_ANOTHER_THREAD, how.split()[0]],
                            stdout=subprocess.PIPE, text=True, env=_env_seeing_this_path(),
                            preexec_fn=ctrl_c_as_in_a_terminal)
    try:
        assert proc.stdout.readline() == "waiting\n"
        os.kill(proc.pid, signal.SIGINT)
        try:
            out = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            out = None
    finally:
        proc.kill()
        proc.wait()
    if how == "poll":
        assert out == "stopped by Ctrl-C\n"
    else:  # what serve() did before: the signal waits until the server exits on its own
        assert out is None


_SIGINT_HANDLER_OF_A_CHILD = """
import signal, subprocess, sys
from helpers.signals import ctrl_c_as_in_a_terminal
probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"]
print(subprocess.run(probe, capture_output=True, text=True).stdout.strip(),
      subprocess.run(probe, capture_output=True, text=True, preexec_fn=ctrl_c_as_in_a_terminal).stdout.strip())
"""


def test_the_ui_tests_ctrl_c_reaches_python_even_where_the_suite_ignores_it():
    # as `make test &` from a script leaves it: SIGINT ignored here and in every child, unless the child resets it
    out = subprocess.run([sys.executable, "-c", _SIGINT_HANDLER_OF_A_CHILD], capture_output=True, text=True,
                         env=_env_seeing_this_path(), timeout=60,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert out.stdout.split() == ["False", "True"], out.stderr
