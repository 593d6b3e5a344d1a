"""``make mlflow-ui``: the MLflow UI on 127.0.0.1, and a direct link to each experiment's runs table.

    python -m spatialflow_repro.mlflow_ui [--port 5000] [--backend-store-uri sqlite:///mlflow.db]

MLflow 3.17 opens an experiment on its GenAI overview (traces) unless the URL, or a switch the browser
remembers, asks for the model-training view. The links printed here carry ``workflowType=machine_learning``,
so they open the runs table with the PQ metrics at once (docs/tracking.md).

Starts ``mlflow ui`` on the store (default: ``MLFLOW_TRACKING_URI``, else the repository's ``mlflow.db``),
waits until its REST API answers, prints one link per experiment that has runs, then waits on the server;
Ctrl-C stops it. An ``http(s)://`` tracking URI is a server already running: its links are printed and
nothing is started.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import subprocess
import sys
import time
import urllib.request

from spatialflow_repro.mlflow_client import default_tracking_uri

START_TIMEOUT_S = 180
_ANSWERS = "/api/2.0/mlflow/experiments/search?max_results=1"


class UIError(Exception):
    """The UI could not be served; the message is the one line the user sees."""


def runs_table_link(base_url: str, experiment_id: str) -> str:
    """The URL of an experiment's runs table in the model-training view (not the GenAI overview)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiments_with_runs(base_url: str) -> list[tuple[str, str]]:
    """``(experiment id, name)`` of every active experiment that holds at least one run, by name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=base_url)
    found = [(e.experiment_id, e.name) for e in client.search_experiments()
             if client.search_runs([e.experiment_id], max_results=1)]
    return sorted(found, key=lambda item: item[1])


def answers(base_url: str) -> bool:
    """True once the server's REST API answers a search."""
    try:
        with urllib.request.urlopen(base_url + _ANSWERS, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_ui(backend_store_uri: str, host: str, port: int) -> subprocess.Popen:
    """``mlflow ui`` in its own process group (it runs its web server as a child process). One worker is
    plenty for one person; without the access log the links printed below stay on the screen."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port), "--workers", "1",
           "--uvicorn-opts", "--no-access-log", "--backend-store-uri", backend_store_uri]
    return subprocess.Popen(cmd, start_new_session=True)


def wait_until_answers(base_url: str, server: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise UIError(f"mlflow ui stopped (exit code {server.returncode}) before answering on {base_url}; "
                          "is the port taken? Another one: MLFLOW_UI_PORT=5001 make mlflow-ui")
        if answers(base_url):
            return
        time.sleep(0.5)
    raise UIError(f"mlflow ui did not answer on {base_url} within {timeout_s:.0f} s")


def wait_while_running(server: subprocess.Popen, poll_s: float = 0.5) -> None:
    """Wait until the server exits, waking every ``poll_s``. Python handles a signal in its main thread when
    that thread next runs Python code; a blocking ``wait()`` sits in ``waitpid`` and returns to Python only if
    the kernel hands the Ctrl-C to the main thread itself, not to one of the threads MLflow's client starts.
    Polling handles it within ``poll_s`` whichever thread received it
    (``tests/repro/test_tracking_server.py``)."""
    while server.poll() is None:
        time.sleep(poll_s)


def stop(server: subprocess.Popen) -> None:
    """Stop the server and its web-server child (the whole process group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def print_links(base_url: str) -> None:
    found = experiments_with_runs(base_url)
    if not found:
        print(f"No runs in {base_url} yet: `make repro` (or one training row) logs them.", flush=True)
        return
    print("Runs table of each experiment (model-training view, with the PQ metrics):")
    width = max(len(name) for _, name in found)
    for experiment_id, name in found:
        print(f"  {name:<{width}}  {runs_table_link(base_url, experiment_id)}")
    sys.stdout.flush()


def serve(backend_store_uri: str, host: str, port: int) -> None:
    base_url = f"http://{host}:{port}"
    server = start_ui(backend_store_uri, host, port)
    try:
        wait_until_answers(base_url, server)
        print(f"\nMLflow UI on {base_url} ({backend_store_uri}); Ctrl-C stops it.", flush=True)
        print_links(base_url)
        wait_while_running(server)
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spatialflow_repro.mlflow_ui",
                                     description="Serve the MLflow UI and print each experiment's runs-table link.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--backend-store-uri", default=None,
                        help="default: MLFLOW_TRACKING_URI, else sqlite:///<repository>/mlflow.db")
    args = parser.parse_args(argv)
    uri = args.backend_store_uri or default_tracking_uri()
    faulthandler.register(signal.SIGUSR2, all_threads=True)  # `kill -USR2 <pid>`: where each thread waits
    # a SIGTERM (a closed terminal, a test harness) stops the server too, as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if uri.startswith(("http://", "https://")):
            if not answers(uri):
                raise UIError(f"no MLflow server answers on {uri} (MLFLOW_TRACKING_URI)")
            print(f"MLflow server {uri} (already running):", flush=True)
            print_links(uri)
        else:
            serve(uri, args.host, args.port)
    except UIError as exc:
        print(f"mlflow-ui: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
