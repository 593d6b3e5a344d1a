"""`make repro` says where it is: stage k of n (from the plan and DVC's $DVC_STAGE), elapsed, and the time
each stage took; long rows start first on the rows route."""

from __future__ import annotations

import io
import json

import yaml

from spatialflow_repro import repro_progress
from spatialflow_repro.hooks import StageProgressHook
from spatialflow_repro.rows import training_cost
from spatialflow_repro.workers import training_costs

PLAN = {"started": 1000.0, "stages": ["prepare_data", "train@t2_baseline", "evaluate_val@t2_baseline", "tables"]}


def test_banner_numbers_the_stage_in_the_plan_and_says_elapsed_time():
    # 2 h 3 min 4 s = 7384 s after the plan was written
    assert repro_progress.banner("train@t2_baseline", PLAN, 1000.0 + 7384) == (
        "[make repro 2:03:04] stage 2 of 4: train@t2_baseline")
    assert repro_progress.banner("tables", PLAN, 1065.0, took=252.4) == (
        "[make repro 0:01:05] stage 4 of 4: tables done in 4 min 12 s")
    assert repro_progress.banner("figures", PLAN, 1065.0, took=9) == "[stage] figures done in 9 s"  # not planned
    assert repro_progress.banner("figures", None, 1065.0) == "[stage] figures"


def test_the_hook_reads_dvc_stage_and_the_plan(tmp_path, monkeypatch, capsys):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    monkeypatch.setenv(repro_progress.PLAN_ENV, str(plan))
    monkeypatch.setenv("DVC_STAGE", "evaluate_val@t2_baseline")
    times = iter([1030.0, 1100.0])
    hook = StageProgressHook(clock=lambda: next(times))
    hook.before_pipeline_run()
    hook.after_pipeline_run()
    assert capsys.readouterr().err.splitlines() == [
        "[make repro 0:00:30] stage 3 of 4: evaluate_val@t2_baseline",
        "[make repro 0:01:40] stage 3 of 4: evaluate_val@t2_baseline done in 1 min 10 s"]
    monkeypatch.delenv("DVC_STAGE")  # a plain `kedro run`: nothing to say
    StageProgressHook(clock=lambda: 0.0).before_pipeline_run()
    assert capsys.readouterr().err == ""


def test_a_plain_dvc_repro_ignores_the_plan_an_earlier_make_repro_left(tmp_path, monkeypatch, capsys):
    """Only `make repro` (which sets $SPATIALFLOW_REPRO_PLAN) numbers the stages; a `dvc repro` typed later
    would otherwise count from the old plan's start ("[make repro 3:11:07] stage 37 of 62")."""
    monkeypatch.delenv(repro_progress.PLAN_ENV, raising=False)
    repro_progress.write_plan(tmp_path, PLAN["stages"], clock=lambda: 1000.0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_STAGE", "tables")
    repro_progress.say_stage(5000.0)
    assert capsys.readouterr().err == "[stage] tables\n"
    monkeypatch.setenv(repro_progress.PLAN_ENV, str(repro_progress.plan_path(tmp_path)))
    repro_progress.say_stage(5000.0)
    assert capsys.readouterr().err == "[make repro 1:06:40] stage 4 of 4: tables\n"


def test_write_plan_is_read_back(tmp_path, monkeypatch):
    monkeypatch.delenv(repro_progress.PLAN_ENV, raising=False)
    path = repro_progress.write_plan(tmp_path, ["a", "b"], clock=lambda: 5.0)
    assert path == (tmp_path / ".dvc" / "tmp" / "repro-plan.json").resolve()
    assert repro_progress.read_plan(path) == {"started": 5.0, "stages": ["a", "b"]}
    path.write_text("{not json")
    assert repro_progress.read_plan(path) is None


def test_training_cost_orders_the_long_rows_first(repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    # t2_baseline: 3 seeds x 1200 x 96 x 128 x 18; t2_subnets the same with one seed
    assert training_cost("t2_baseline", params) == 3 * training_cost("t2_subnets", params)
    # t6 DCN: 1 seed x 3600 (its own schedule) x 168 x 192 (its multi-scale range) x 34 x 3
    assert training_cost("t6_r101_dcn", params) == 3600 * 168 * 192 * 34 * 3.0
    stages = ["train@t2_subnets", "train@t2_baseline", "train@t6_r101_dcn", "train@t2_reg_cls"]
    costs = training_costs(repo_root, stages)
    assert sorted(stages, key=lambda stage: -costs[stage]) == ["train@t6_r101_dcn", "train@t2_baseline",
                                                               "train@t2_subnets", "train@t2_reg_cls"]


def test_generations_put_each_stage_as_early_as_it_can_run(repo_root):
    from spatialflow_repro.workers import generations, upstream_stages

    gens = generations(repo_root)
    where = {stage: number for number, generation in enumerate(gens) for stage in generation}
    assert gens[0] == sorted(["prepare_data", "pretrain_backbone@resnet18", "pretrain_backbone@resnet34",
                              "fixed_stuff_loss_weight"])
    # the Cityscapes-like rows need no search: they train alongside Table 1's rows (generation 1); Table 1's
    # evaluations (2) and the search (3) come before the COCO-like rows (4)
    assert where["train@t3_baseline"] == where["train@t7_r101"] == where["table1@t1_lambda_0_25"] == 1
    assert (where["evaluate_lambda@t1_lambda_0_25"], where["search_stuff_loss_weight"]) == (2, 3)
    assert where["train@t2_baseline"] == where["train@t4_r101_800"] == where["train@t6_r101_dcn"] == 4
    for stage in ("train_pretrained@t7_r101_coco", "tables", "evaluate_testdev@t6_r101_dcn"):
        upstream = upstream_stages(repo_root, stage)
        assert all(where[u] < where[stage] for u in upstream) and where[stage] == 1 + max(where[u] for u in upstream)
