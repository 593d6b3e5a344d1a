"""The MLflow UI as a person uses it: a real `mlflow server` on 127.0.0.1 over runs like the micro
profile's, opened in headless Chromium (Debian's `chromium` package, driven by Playwright).

Checks the experiment page lands on the training runs (with the profile / commit description and a parent
run per table) and that the compare view of the Table 2 rows shows the rows, their resolved switches, PQ
metrics and tags. Saves a screenshot of the compare view in the test's folder; with
SPATIALFLOW_UPDATE_SCREENSHOT=1 it also refreshes docs/img/mlflow_compare.png (shown by
README.md and docs/tracking.md).

The runs are logged through the project's own tracking path (tests/helpers/mlflow_server.py's
``log_micro_like_runs``: row_callback -> train -> log_evaluation -> log_figure), a few toy iterations per
row, so the test needs no `dvc repro`.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers.mlflow_server import MICRO_PQ, Server, log_micro_like_runs
from helpers.paths import REPO_ROOT

pytestmark = pytest.mark.slow

SCREENSHOT = REPO_ROOT / "docs" / "img" / "mlflow_compare.png"
TIMEOUT_MS = 120_000  # the UI's first load on a busy 2-core machine
# MLflow 3.17's UI opens every experiment on the GenAI overview unless the "Model training" workflow is
# chosen (a browser setting, or this URL parameter); the mlflow.experimentKind tag alone is not enough.
TRAINING = "workflowType=machine_learning"


def chromium() -> str:
    """Debian's chromium (Playwright's own browser download is not reachable). Missing: the test fails."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: `apt-get install -y chromium` as root (or "
                    "`sudo apt-get install -y chromium`); .ci/run installs it")
    return path


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("mlflow-ui")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/m.db")  # the server's store below
        run_ids = log_micro_like_runs(folder / "runs")
    server = Server(folder)
    server.start()
    try:
        experiment = MlflowClient(tracking_uri=server.uri).get_experiment_by_name("spatialflow-micro")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield {"page": page, "uri": server.uri, "experiment_id": experiment.experiment_id, "run_ids": run_ids,
                   "folder": folder}
            browser.close()
    finally:
        server.stop()


def _close_assistant(page) -> None:
    """MLflow 3.17 opens an "MLflow Assistant" side panel; close it so the page has the room."""
    panel = page.get_by_text("Ask questions about your experiments", exact=False)
    if panel.count():
        page.get_by_role("button", name="Close").last.click()
        panel.wait_for(state="hidden")


def _show_metric_rows_from(page, name: str) -> None:
    """Scroll both metric grids (names, values) so that metric ``name`` is their first row."""
    grids = page.locator(".ReactVirtualized__Grid")
    _metric_values(page, name)
    row_top = grids.nth(0).get_by_text(name, exact=True).evaluate(
        "element => element.closest('[style*=top]').style.top").removesuffix("px")
    for _ in range(50):
        for index in (1, 0):
            grids.nth(index).evaluate(f"grid => {{ grid.scrollTop = {row_top}; }}")
        page.wait_for_timeout(300)
        if grids.nth(0).evaluate("grid => grid.scrollTop") == grids.nth(1).evaluate("grid => grid.scrollTop"):
            return


def test_experiment_page_lands_on_the_training_runs_grouped_by_table(ui):
    page = ui["page"]
    page.goto(f"{ui['uri']}/#/experiments/{ui['experiment_id']}?{TRAINING}")
    parent = page.get_by_role("row").filter(has_text="table2").first
    parent.wait_for()
    assert "/runs" in page.url  # the runs table, not the GenAI overview
    body = page.inner_text("body")
    assert "micro" in body and "git commit" in body  # the experiment description
    cells = page.get_by_role("gridcell")
    assert cells.filter(has_text="table1").count() and not cells.filter(has_text="t2_baseline/seed0").count()
    parent.locator("button[data-component-id*=runnamecellrenderer]").click()  # expand the Table 2 parent
    cells.filter(has_text="t2_spatialflow/seed0").first.wait_for()
    assert cells.filter(has_text="t2_baseline/seed0").count()
    assert not cells.filter(has_text="t1_lambda_0_25/seed0").count()  # Table 1's row stays folded


def _table_row(page, name: str) -> list[str]:
    """A row of the compare view's parameter or tag table: [name, value of run 1, value of run 2]."""
    row = page.get_by_role("row").filter(has=page.get_by_text(name, exact=True))
    return row.first.inner_text().split()


def _metric_values(page, name: str) -> list[str]:
    """The values of metric ``name`` in the compare view, one per run. Its metrics table is two
    virtualised grids (names, values) that render only the rows in view: scroll to the row first."""
    grids = page.locator(".ReactVirtualized__Grid")
    names, values = grids.nth(0), grids.nth(1)
    values.wait_for()
    cell = names.get_by_text(name, exact=True)
    for top in range(0, 5000, 200):
        names.evaluate(f"grid => {{ grid.scrollTop = {top}; }}")
        page.wait_for_timeout(200)
        if cell.count():
            break
    row_top = cell.evaluate("element => element.closest('[style*=top]').style.top")
    row = values.locator(f"div[style*='top: {row_top};']")
    for _ in range(50):  # the two grids re-sync each other's scroll position: set it until the row shows
        values.evaluate(f"grid => {{ grid.scrollTop = {row_top.removesuffix('px')}; }}")
        page.wait_for_timeout(300)
        if row.count():
            break
    return row.all_inner_texts()


def test_compare_view_of_table2_shows_rows_switches_pq_and_tags(ui):
    page, ids = ui["page"], ui["run_ids"]
    rows = ["t2_baseline", "t2_spatialflow"]
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.goto(f"{ui['uri']}/#/compare-runs?runs={json.dumps([ids[r] for r in rows])}"
              f"&experiments={json.dumps([ui['experiment_id']])}&{TRAINING}")
    page.get_by_text("t2_spatialflow/seed0", exact=True).first.wait_for()
    _close_assistant(page)
    body = page.inner_text("body")
    assert "Comparing 2 Runs" in body and "t2_baseline/seed0" in body
    for tag, values in (("row", rows), ("table", ["2", "2,4"]), ("preset", ["baseline", "spatialflow"]),
                        ("profile", ["micro", "micro"]), ("dvc_stage", [f"train@{r}" for r in rows])):
        assert _table_row(page, tag) == [tag, *values], tag

    page.get_by_role("switch").first.click()  # parameters: show the differences only
    assert _table_row(page, "model.flow_stuff_mask") == ["model.flow_stuff_mask", "False", "True"]
    assert _table_row(page, "model.subnets") == ["model.subnets", "False", "True"]
    assert not page.get_by_text("train.lr", exact=True).count()  # the same in both rows: hidden

    for metric, index in (("val/PQ", 0), ("val/PQ_th", 1), ("val/PQ_st", 2)):
        shown = _metric_values(page, metric)
        assert [float(v) for v in shown] == [MICRO_PQ[r][index] for r in rows], (metric, shown)
    shown = _metric_values(page, "test-dev/PQ")  # test-dev: only the SpatialFlow row is evaluated there
    assert shown[0] == "NaN" and float(shown[1]) == MICRO_PQ["t2_spatialflow"][0] - 1, shown

    page.get_by_text("Visualizations", exact=True).click()  # fold the plots: rows, switches, PQ in view
    _close_assistant(page)
    _show_metric_rows_from(page, "val/PQ")  # the last rows: test-dev/SQ .. val/SQ
    page.wait_for_timeout(500)
    shot = ui["folder"] / SCREENSHOT.name
    page.screenshot(path=str(shot))
    print(f"compare view: {shot}")
    if os.environ.get("SPATIALFLOW_UPDATE_SCREENSHOT") == "1":  # refresh the docs' copy on purpose only
        shutil.copyfile(shot, SCREENSHOT)
