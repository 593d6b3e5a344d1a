"""A remote a team would use: DVC over S3, for real, against an S3-compatible server (moto's server mode)
started by the test on 127.0.0.1.

One clone of the micro project trains a row (`dvc repro train@t2_baseline`: data, the pretrained
backbone, the lambda search and the row) and `dvc push`es to an S3 remote whose URL is committed in
`.dvc/config` and whose endpoint and credentials live in `.dvc/config.local`, as docs/remotes.md
describes. A fresh clone configures its own credentials, `dvc pull`s, and `dvc repro` there
retrains nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from helpers.micro_project import copy_project, micro_params, run

pytestmark = pytest.mark.slow

BUCKET = "spatialflow-team"
TARGET = "train@t2_baseline"
CHECKPOINT = "data/06_models/t2_baseline/seed0/model_final.pt"


def _s3_params(params: dict) -> dict:
    """The micro profile cut to what one trained row needs: one lambda row, one Table 2 row, no test-dev."""
    params = micro_params(params)
    params["rows"] = {"t2_baseline": params["rows"]["t2_baseline"]}
    params["testdev_rows"] = {}
    params["figures"] = {**params["figures"], "spatialflow_row": "t2_baseline"}  # rows of this grid only
    return params


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 on 127.0.0.1 (a free port) with one empty bucket; yields its endpoint URL."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _s3_credentials(project: Path, endpoint: str, env: dict) -> None:
    """What each teammate runs once: endpoint and keys into the git-ignored .dvc/config.local."""
    for key, value in (("endpointurl", endpoint), ("access_key_id", "testing"),
                       ("secret_access_key", "testing"), ("region", "us-east-1")):
        run(["dvc", "remote", "modify", "--local", "team", key, value], project, env)


def _bucket_keys(endpoint: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_push_to_s3_pull_in_a_fresh_clone_retrains_nothing(tmp_path, repo_root, s3_server):
    project, clone = tmp_path / "project", tmp_path / "clone"
    copy_project(repo_root, project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(_s3_params(params), sort_keys=False))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "KEDRO_DISABLE_TELEMETRY": "1", "DVC_NO_ANALYTICS": "1", "MPLBACKEND": "Agg",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.invalid", "AWS_EC2_METADATA_DISABLED": "true"})
    run(["git", "init", "-q", "-b", "main"], project, env)
    run(["dvc", "remote", "add", "--default", "team", f"s3://{BUCKET}/dvc-cache"], project, env)
    _s3_credentials(project, s3_server, env)
    assert "secret_access_key" not in (project / ".dvc/config").read_text()  # committed: the URL only
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "micro project, S3 remote"], project, env)

    first = run(["dvc", "repro", TARGET], project, env)
    assert f"Running stage '{TARGET}'" in first
    run(["dvc", "push", "--with-deps", TARGET], project, env)
    keys = _bucket_keys(s3_server)
    assert keys and all(key.startswith("dvc-cache/files/md5/") for key in keys), keys[:5]
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "trained t2_baseline"], project, env)

    run(["git", "clone", "-q", str(project), str(clone)], tmp_path, env)
    assert not (clone / ".dvc/config.local").exists() and not (clone / CHECKPOINT).exists()
    _s3_credentials(clone, s3_server, env)
    run(["dvc", "pull", "--with-deps", TARGET], clone, env)
    assert (clone / CHECKPOINT).read_bytes() == (project / CHECKPOINT).read_bytes()
    status = run(["dvc", "status", "--with-deps", TARGET], clone, env)
    assert "Data and pipelines are up to date" in status, status
    again = run(["dvc", "repro", TARGET], clone, env)
    assert "Running stage" not in again, again
