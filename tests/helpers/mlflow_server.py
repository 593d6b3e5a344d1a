"""MLflow for the tracking tests: a real `mlflow server` on 127.0.0.1, and runs like the micro profile's
logged through the project's own tracking path (for the UI's checks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers.toy import toy_config, toy_factories
from spatialflow.engine.trainer import train
from spatialflow_repro import tracking

MLFLOW = Path(sys.executable).parent / "mlflow"  # the venv running the tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 with a SQLite store; start() waits for /health."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.proc = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.folder}/m.db",
               "--artifacts-destination", str(self.folder / "art")]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start: {(self.folder / 'server.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker (our own group)
            self.proc.wait(timeout=30)
        self.proc = None


MICRO_PROFILE = {"name": "micro", "description": "micro: a few iterations per row"}
MICRO_ROWS = {
    "t1_lambda_0_25": {"tables": [1], "dataset": "coco", "preset": "baseline", "backbone": "R50", "size": "600"},
    "t2_baseline": {"tables": [2], "dataset": "coco", "preset": "baseline", "backbone": "R50", "size": "800"},
    "t2_spatialflow": {"tables": [2, 4], "dataset": "coco", "preset": "spatialflow", "backbone": "R50",
                       "size": "800"},
}
# (PQ, PQ_th, PQ_st) on val per row; test-dev for t2_spatialflow only, like the micro profile
MICRO_PQ = {"t1_lambda_0_25": (20.5, 24.0, 15.25), "t2_baseline": (21.5, 25.0, 16.0),
            "t2_spatialflow": (23.75, 27.5, 18.0)}


def pq_result(pq: float, pq_th: float, pq_st: float) -> dict:
    """pq_compute's shape with SQ = 80 and RQ = PQ / 0.8 for every group."""
    return {group: {"pq": value, "sq": 80.0, "rq": value / 0.8, "n": 2}
            for group, value in (("All", pq), ("Things", pq_th), ("Stuff", pq_st))}


def log_micro_like_runs(folder: Path) -> dict[str, str]:
    """Runs like the micro profile's, logged through the project's own path (row_callback -> train ->
    log_evaluation -> log_figure) into ``MLFLOW_TRACKING_URI``: three rows of Tables 1-2, a few toy
    iterations each (loss curves), val PQ for every row and test-dev for t2_spatialflow, the overlay
    figure on both Table 2 rows. Returns {row: run id}."""
    from PIL import Image

    from spatialflow.engine.config import experiment_to_dict, load_experiment_config

    run_ids = {}
    for name, row in MICRO_ROWS.items():
        config = experiment_to_dict(toy_config(folder / name, length=4, log_every=1, decay_steps=[3],
                                               warmup_iters=1))
        config["model"] = {"preset": row["preset"], "fpn_channels": 32}
        tracker = tracking.row_callback(name, row, MICRO_PROFILE, 0, config)
        train(load_experiment_config(config), [tracker], **toy_factories())
        assert tracker.close() is None
        run_ids[name] = tracker.run_id
        splits = {"val": MICRO_PQ[name]} | ({"test": tuple(v - 1 for v in MICRO_PQ[name])}
                                            if name == "t2_spatialflow" else {})
        for split, pq in splits.items():
            predictions = folder / name / f"{split}_predictions"
            (predictions / "panoptic_pred").mkdir(parents=True)
            Image.new("RGB", (8, 8), (1, 2, 3)).save(predictions / "panoptic_pred" / "000001.png")
            entry = {"metrics": {**pq_result(*pq), "inference_seconds": 0.5}, "submission": None}
            (predictions / "metrics.json").write_text(json.dumps(entry["metrics"]))
            tracking.log_evaluation(tracker.run_id, split, entry, predictions)
    figure = folder / "panoptic_overlays.png"
    Image.new("RGB", (64, 32), (200, 100, 50)).save(figure)
    tracking.log_figure([run_ids["t2_baseline"], run_ids["t2_spatialflow"]], figure)
    return run_ids
