"""End to end: the real `dvc repro` on a micro profile, in a temporary copy of the repository.

One lambda row, two rows of Table 2 and one test-dev evaluation, a few iterations each. Checks what a
researcher relies on: tables are written, every row is an MLflow run, `dvc status` is clean, a second
`dvc repro` does nothing, a fresh clone + `dvc pull` retrains nothing, and changing one row's parameter
retrains that row only.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.micro_project import new_micro_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def micro_project(tmp_path_factory, repo_root):
    base = tmp_path_factory.mktemp("e2e")
    project = base / "project"
    env = new_micro_project(project, repo_root, f"sqlite:///{base / 'mlflow.db'}")
    first = run(["dvc", "repro"], project, env)
    return {"base": base, "project": project, "env": env, "first_repro": first}


def test_repro_writes_all_tables_and_metrics(micro_project):
    project = micro_project["project"]
    tables = project / "data/08_reporting/tables"
    for number in range(1, 8):
        for suffix in ("md", "csv", "tex"):
            assert (tables / f"table{number}.{suffix}").is_file()
    for row in ("t2_baseline", "t2_spatialflow"):
        metrics = json.loads((project / f"data/08_reporting/metrics/val/{row}.json").read_text())
        assert metrics["has_ground_truth"] and 0.0 <= metrics["summary"]["pq"] <= 100.0
    search = json.loads((project / "data/08_reporting/lambda_search.json").read_text())
    assert search["selected_stuff_loss_weight"] == 0.25  # the only Table 1 row of the micro profile
    weights = project / "data/05_model_input/stuff_loss_weight"
    assert json.loads((weights / "coco.json").read_text()) == {"stuff_loss_weight": 0.25, "source": "Table 1's search"}
    assert json.loads((weights / "cityscapes.json").read_text()) == {
        "stuff_loss_weight": 1.0, "source": "profiles.micro.stuff_loss_weight.cityscapes"}
    training = json.loads((project / "data/06_models/t2_baseline/training.json").read_text())
    assert training["stuff_loss_weight"] == 0.25 and training["stuff_loss_weight_source"] == "Table 1's search"
    testdev = json.loads((project / "data/08_reporting/metrics/testdev/t2_spatialflow.json").read_text())
    assert testdev["tta"] == "coco" and testdev["summary"] is not None
    table2 = (tables / "table2.md").read_text()
    assert "t2_spatialflow" in table2 or "stuff-mask flow" in table2
    assert (project / "data/08_reporting/figures").is_dir()


def test_every_trained_row_is_an_mlflow_run(micro_project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=micro_project["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("spatialflow-micro")
    runs = client.search_runs([experiment.experiment_id])
    by_row = {found.data.tags["row"]: found for found in runs if "row" in found.data.tags}  # not the tables' parents
    assert set(by_row) == {"t1_lambda_0_25", "t2_baseline", "t2_spatialflow"}
    row_run = by_row["t2_spatialflow"]
    assert row_run.info.status == "FINISHED"
    assert row_run.data.tags["profile"] == "micro" and row_run.data.tags["seed"] == "0"
    assert row_run.data.tags["dvc_stage"] == "train@t2_spatialflow"
    assert row_run.data.params["run.log_every"] == "1" and row_run.data.params["model.backbone_weights"].endswith(
        "resnet18/weights.pt")
    assert "pq_all" in row_run.data.metrics and "pq_all_test" in row_run.data.metrics
    assert row_run.data.params["model.preset"] == "spatialflow"


def test_second_repro_does_nothing_and_status_is_clean(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project, env)
    again = run(["dvc", "repro"], project, env)
    assert "Running stage" not in again, again


def test_fresh_clone_pulls_checkpoints_and_retrains_nothing(micro_project):
    project, env, base = micro_project["project"], micro_project["env"], micro_project["base"]
    run(["dvc", "push"], project, env)
    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-qm", "results"], project, env)
    clone = base / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], base, env)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(base / "remote")], clone, env)
    run(["dvc", "pull"], clone, env)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone, env)
    output = run(["dvc", "repro"], clone, env)
    assert "Running stage" not in output, output


def _changed_stages(project: Path, env: dict) -> set[str]:
    """Stage names `dvc status` reports as changed (their own deps or params, not upstream outputs)."""
    out = run(["dvc", "status", "--json"], project, env)
    return set(json.loads(out[out.index("{"):])) if "{" in out else set()


EVALUATION = ("evaluate_lambda@", "evaluate_val@", "evaluate_pretrained@", "evaluate_testdev@")


@contextlib.contextmanager
def _edited(path: Path, change):
    """``path`` rewritten by ``change(text) -> text`` for the block, then restored byte for byte."""
    before = path.read_text()
    path.write_text(change(before))
    try:
        yield
    finally:
        path.write_text(before)


def _params_change(change):
    def edit(text: str) -> str:
        params = yaml.safe_load(text)
        change(params)
        return yaml.safe_dump(params, sort_keys=False)
    return edit


def test_a_merge_threshold_reevaluates_and_never_retrains(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    merge = _params_change(lambda p: p["profiles"]["micro"]["inference"]["merge"]["coco"].update(score_threshold=0.5))
    with _edited(project / "params.yaml", merge):
        changed = _changed_stages(project, env)
    assert changed == {"evaluate_lambda@t1_lambda_0_25", "evaluate_val@t2_baseline",
                       "evaluate_val@t2_spatialflow", "evaluate_testdev@t2_spatialflow"}, changed


def test_b_touching_pq_code_reevaluates_only(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    with _edited(project / "src/spatialflow/panoptic/pq.py", lambda text: text + "\n# a comment\n"):
        changed = _changed_stages(project, env)
    assert changed and all(name.startswith(EVALUATION) for name in changed), changed


def test_c_touching_the_cli_or_readme_reruns_nothing(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    for rel in ("src/spatialflow/cli.py", "README.md", "src/spatialflow/commands/evaluate.py"):
        with _edited(project / rel, lambda text: text + "\n"):
            assert _changed_stages(project, env) == set(), rel


def test_d_run_settings_retrain_nothing(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    run_settings = _params_change(
        lambda p: p["profiles"]["micro"]["run"].update(log_every=3, checkpoint_every=5, workers=1))
    with _edited(project / "params.yaml", run_settings):
        assert _changed_stages(project, env) == set()


def test_e_a_rows_schedule_retrains_that_row_keeps_its_old_run_and_the_run_cache_restores_it(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    old_final = project / "data/06_models/t2_baseline/seed0/model_final.pt"
    old_bytes = old_final.read_bytes()
    path = project / "params.yaml"
    original = path.read_text()
    path.write_text(_params_change(lambda p: p["rows"]["t2_baseline"].update(schedule={"length": 5}))(original))
    changed = _changed_stages(project, env)
    assert changed == {"train@t2_baseline"}, changed
    output = run(["dvc", "repro"], project, env)
    assert "Running stage 'train@t2_baseline'" in output
    for unchanged in ("train@t2_spatialflow", "table1@t1_lambda_0_25", "prepare_data",
                      "evaluate_testdev@t2_spatialflow", "pretrain_backbone@resnet18"):
        assert f"Running stage '{unchanged}'" not in output, unchanged
    # the old run was moved aside in the working area, which is no DVC output: never cached, never pushed
    moved = list((project / "data/runs/t2_baseline").glob("seed0.replaced-*"))
    assert len(moved) == 1 and (moved[0] / "model_final.pt").read_bytes() == old_bytes  # nothing thrown away
    assert sorted(p.name for p in (project / "data/06_models/t2_baseline").iterdir()) == ["seed0", "training.json"]
    assert "replaced" not in (project / "dvc.lock").read_text()
    assert json.loads((project / "data/06_models/t2_baseline/seed0/train_result.json").read_text())["iterations"] == 5
    listing = subprocess.run([sys.executable, "-m", "spatialflow.cli", "clean-replaced"],
                             cwd=project, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert listing.returncode == 0 and "seed0.replaced-" in listing.stdout and "rm -rf" in listing.stdout
    assert moved[0].is_dir()  # listed, never removed by the code
    # back to the first schedule: DVC's run-cache restores that row's outputs and trains nothing
    path.write_text(original)
    output = run(["dvc", "repro"], project, env)
    assert "Stage 'train@t2_baseline' is cached - skipping run, checking out outputs" in output, output[-3000:]
    assert "Running stage 'train@" not in output
    assert old_final.read_bytes() == old_bytes


def test_changing_one_rows_stuff_loss_weight_retrains_only_that_row(micro_project):
    project, env = micro_project["project"], micro_project["env"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["rows"]["t2_spatialflow"]["stuff_loss_weight"] = 0.5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = run(["dvc", "repro"], project, env)
    assert "Running stage 'train@t2_spatialflow'" in output
    for unchanged in ("train@t2_baseline", "table1@t1_lambda_0_25", "prepare_data"):
        assert f"Running stage '{unchanged}'" not in output, unchanged

