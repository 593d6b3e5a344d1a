"""The experiment grid is one thing: params.yaml rows == DVC stages == Kedro namespaces."""

from __future__ import annotations

import os

import pytest
import yaml
from dvc.repo import Repo

from helpers.paths import REPO_ROOT
from spatialflow.errors import ConfigError
from spatialflow_repro.pipelines.registry import build_pipelines
from spatialflow_repro.pipelines.evaluate.nodes import summarise
from spatialflow_repro.pipelines.train.nodes import dataset_stuff_loss_weight, search_stuff_loss_weight
from spatialflow_repro import rows as grid
from spatialflow_repro.rows import describe_row, row_stuff_loss_weight, trained_rows, uses_search


@pytest.fixture(scope="module")
def params(repo_root) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text())


@pytest.fixture(scope="module")
def stages(repo_root) -> dict:
    with Repo(str(repo_root)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages}


def _suffixes(stages: dict, group: str) -> set[str]:
    return {name.split("@", 1)[1] for name in stages if name.startswith(f"{group}@")}


def test_dvc_stages_are_the_rows_of_params_yaml(params, stages):
    assert _suffixes(stages, "table1") == set(params["search_rows"])
    assert _suffixes(stages, "train") == set(params["rows"])
    assert _suffixes(stages, "train_pretrained") == set(params["pretrained_rows"])
    assert _suffixes(stages, "evaluate_lambda") == set(params["search_rows"])
    assert _suffixes(stages, "evaluate_val") == set(params["rows"])
    assert _suffixes(stages, "evaluate_pretrained") == set(params["pretrained_rows"])
    assert _suffixes(stages, "evaluate_testdev") == set(params["testdev_rows"])
    assert _suffixes(stages, "pretrain_backbone") == set(params["pretrain_backbones"])
    assert len(trained_rows(params)) == 8 + 17 + 1  # Table 1, Tables 2-7 (shared rows once), Table 7 -COCO


def test_kedro_namespaces_are_the_rows_of_params_yaml(params):
    pipelines = build_pipelines(params)
    train_namespaces = {n.namespace for n in pipelines["train"].nodes}
    assert train_namespaces == set(trained_rows(params))
    assert {n.namespace for n in pipelines["evaluate_val"].nodes} == set(trained_rows(params))
    assert {n.name.split(".")[-1] for n in pipelines["train"].nodes} == {"train"}  # training only
    assert {n.namespace for n in pipelines["evaluate"].nodes} == set(grid.testdev_rows(params))


def test_weight_search_and_tables_read_only_row_metrics(params, stages):
    """Each row writes data/08_reporting/metrics/<split>/<row>.json; Table 1's search depends on Table 1's
    folder only (so it cannot depend on the rows that use its result), the tables on all metrics."""
    deps = {str(d.def_path) for d in stages["search_stuff_loss_weight"].deps} - {"params.yaml"}
    assert deps == {"data/08_reporting/metrics/lambda"}
    assert [str(d.def_path) for d in stages["fixed_stuff_loss_weight"].deps] == ["params.yaml"]
    for row in params["search_rows"]:
        outs = {str(o.def_path) for o in stages[f"evaluate_lambda@{row}"].outs}
        assert f"data/08_reporting/metrics/lambda/{row}.json" in outs
    for row in params["rows"]:
        assert f"data/08_reporting/metrics/val/{row}.json" in {str(o.def_path) for o in stages[f"evaluate_val@{row}"].outs}
    table_deps = {str(d.def_path) for d in stages["tables"].deps}
    assert {"data/08_reporting/metrics", "data/08_reporting/lambda_search.json"} <= table_deps
    assert not any(dep.startswith(("data/06_models", "data/07_model_output")) for dep in table_deps)


def test_a_rows_stuff_loss_weight_comes_from_the_row_or_its_datasets_profile_entry():
    tiny = {"name": "tiny", "stuff_loss_weight": {"coco": "search", "cityscapes": 1.0}}
    coco = {"name": "coco", "stuff_loss_weight": {"coco": 0.25}}
    cocolike, citylike = {"dataset": "coco"}, {"dataset": "cityscapes"}
    assert row_stuff_loss_weight({**cocolike, "stuff_loss_weight": 0.75}, tiny, selected=0.4) == (0.75, "row")
    assert row_stuff_loss_weight(cocolike, tiny, selected=0.4) == (0.4, "Table 1's search")
    assert row_stuff_loss_weight(citylike, tiny, selected=0.4) == (1.0, "profiles.tiny.stuff_loss_weight.cityscapes")
    assert row_stuff_loss_weight(cocolike, coco, selected=0.4) == (0.25, "profiles.coco.stuff_loss_weight.coco")
    assert uses_search(cocolike, tiny) and not uses_search(citylike, tiny) and not uses_search(cocolike, coco)
    with pytest.raises(ConfigError, match="profiles.tiny.stuff_loss_weight.coco is 'search', but Table 1 has not"):
        row_stuff_loss_weight(cocolike, tiny, selected=None)
    with pytest.raises(ConfigError, match="profiles.coco.stuff_loss_weight: has no entry for dataset 'cityscapes'"):
        row_stuff_loss_weight(citylike, coco, selected=None)


def _metrics(row: str, weight: float, pq: float, pq_st: float) -> dict:
    return {"row": row, "stuff_loss_weight": weight, "summary": {"pq": pq, "pq_th": 2 * pq - pq_st, "pq_st": pq_st}}


def test_the_search_picks_the_best_pq_for_its_dataset_and_fixed_datasets_take_the_profiles(params):
    search, coco = search_stuff_loss_weight(
        params,
        _metrics("t1_lambda_1_00", 1.0, 30.0, 20.0),
        _metrics("t1_lambda_0_50", 0.5, 35.0, 21.0),
        _metrics("t1_lambda_0_25", 0.25, 35.0, 22.0),  # ties on PQ with 0.5: larger PQ_st wins
        {"row": "t1_lambda_0_10", "skipped": "not run"},
    )
    assert search["selected_stuff_loss_weight"] == 0.25 and search["selected_row"] == "t1_lambda_0_25"
    assert [c["row"] for c in search["candidates"]] == ["t1_lambda_1_00", "t1_lambda_0_50", "t1_lambda_0_25"]
    assert coco == {"stuff_loss_weight": 0.25, "source": "Table 1's search"}
    assert dataset_stuff_loss_weight(params, "cityscapes") == {
        "stuff_loss_weight": 1.0, "source": "profiles.tiny.stuff_loss_weight.cityscapes"}
    pinned = {**params, "profile": "coco"}
    assert search_stuff_loss_weight(pinned, _metrics("t1_lambda_1_00", 1.0, 30.0, 20.0))[1] == {
        "stuff_loss_weight": 0.25, "source": "profiles.coco.stuff_loss_weight.coco"}  # pinned: search ignored


def test_rows_of_a_fixed_weight_need_no_table1_stage(repo_root):
    """A Cityscapes-like row depends on the fixed weight's stage, never on Table 1 (DVC's own graph)."""
    import networkx as nx

    with Repo(str(repo_root)) as repo:
        graph = repo.index.graph
        by_name = {s.addressing: s for s in graph.nodes}
        upstream = {s.addressing for s in nx.descendants(graph, by_name["train@t3_baseline"])}
        assert "fixed_stuff_loss_weight" in upstream
        assert not any(name.startswith(("table1@", "evaluate_lambda@")) for name in upstream)
        upstream = {s.addressing for s in nx.descendants(graph, by_name["train@t2_baseline"])}
        assert "search_stuff_loss_weight" in upstream and "table1@t1_lambda_0_25" in upstream


def test_summarise_mean_and_sample_std_over_seeds():
    def seed(pq):
        part = {"pq": pq, "sq": 80.0, "rq": pq / 0.8}
        return {"metrics": {"All": part, "Things": part, "Stuff": part}}

    mean, std = summarise([seed(40.0), seed(42.0), seed(44.0)])
    assert mean["pq"] == pytest.approx(42.0) and std["pq"] == pytest.approx(2.0)  # sqrt((4+0+4)/2)
    assert mean["sq"] == 80.0 and std["sq"] == 0.0
    assert summarise([{"metrics": None}]) == (None, None)


def test_describe_row_says_what_it_stands_for(params):
    profile = {**params["profiles"]["tiny"], "name": "tiny"}
    text = describe_row(params["rows"]["t4_r101_800"], profile)
    training = params["profiles"]["tiny"]["training"]
    depth, (short, longest) = training["backbones"]["R101"], training["sizes"]["800"]
    length = training["schedule"]["coco"]["length"]
    assert text == (f"ResNet-{depth}, shorter side {short} px (max {longest}), shapes-coco, {length} iterations"
                    " -- stands for ResNet-101 @ 800 px on COCO")


def _params_deps(stage) -> set[str]:
    return {key for dep in stage.deps if hasattr(dep, "params") for key in (dep.params or [])}


def test_train_stages_depend_on_the_training_identity_only(params, stages):
    """Training reads the training code and params; never the inference settings, run settings, PQ or CLI."""
    from spatialflow.engine.run_dir import TRAINING_CODE

    profile = params["profile"]
    for name, stage in stages.items():
        if not name.startswith(("table1@", "train@", "train_pretrained@")):
            continue
        deps = {str(d.def_path) for d in stage.deps}
        assert set(TRAINING_CODE) <= deps, name
        assert not any(d.startswith(("src/spatialflow/panoptic", "src/spatialflow/inference", "src/spatialflow/cli",
                                     "src/spatialflow/commands", "src/spatialflow/benchmarks", "README", "docs"))
                       for d in deps), name
        keys = _params_deps(stage)
        assert not any(k.startswith((f"profiles.{profile}.inference", f"profiles.{profile}.run")) for k in keys)
        assert any(k.startswith(f"profiles.{profile}.training") for k in keys), name
        for identity_key in ("amp", "cpu_threads"):  # machine-facing settings that change the weights
            assert {f"profiles.{profile}.training", f"profiles.{profile}.training.{identity_key}"} & set(keys), \
                (name, identity_key)


def test_evaluation_stages_depend_on_inference_settings_not_training(params, stages):
    profile = params["profile"]
    for name, stage in stages.items():
        if not name.startswith(("evaluate_lambda@", "evaluate_val@", "evaluate_pretrained@", "evaluate_testdev@")):
            continue
        deps = {str(d.def_path) for d in stage.deps}
        assert {"src/spatialflow/inference", "src/spatialflow/panoptic"} <= deps, name
        assert "src/spatialflow/engine" not in deps and "src/spatialflow/cli.py" not in deps, name
        keys = _params_deps(stage)
        assert any(k.startswith(f"profiles.{profile}.inference") for k in keys), name
        assert not any(k.startswith((f"profiles.{profile}.training", f"profiles.{profile}.run")) for k in keys)


def test_the_first_stages_keep_their_outputs_when_the_profile_is_unknown(repo_root):
    """DVC removes a stage's outputs before it checks the stage's params, so `profile: nosuch` would wipe
    the data and the pretrained backbones; the stages that can run first keep (persist) their outputs."""
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for outs in (stages["prepare_data"]["outs"], stages["pretrain_backbone"]["do"]["outs"]):
        for out in outs:
            assert isinstance(out, dict) and next(iter(out.values())).get("persist") is True, out
    roots = {name for name, stage in stages.items()
             if not any(str(d).startswith("data/") for d in (stage.get("deps") or stage.get("do", {}).get("deps", [])))}
    # every other stage runs after one of them, but the fixed weight's, which params alone rewrite
    assert roots == {"prepare_data", "pretrain_backbone", "fixed_stuff_loss_weight"}


def test_dvc_keeps_persisted_outputs_when_a_param_is_missing(tmp_path):
    """The guard above, checked against DVC itself in a scratch project."""
    import subprocess
    import sys

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", *cmd] if cmd[0] == "dvc" else list(cmd)
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True)

    assert run("git", "init", "-q").returncode == 0 and run("dvc", "init", "-q").returncode == 0
    (tmp_path / "params.yaml").write_text("profile: tiny\nprofiles: {tiny: {n: 1}}\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  prepare:\n    cmd: mkdir -p kept gone && echo 1 > kept/a && echo 1 > gone/a\n"
        "    params:\n      - profiles.${profile}.n\n    outs:\n      - kept:\n          persist: true\n      - gone\n")
    assert run("dvc", "repro").returncode == 0
    (tmp_path / "params.yaml").write_text("profile: nosuch\nprofiles: {tiny: {n: 1}}\n")
    failed = run("dvc", "repro")
    assert failed.returncode != 0 and "Parameters 'profiles.nosuch.n' are missing" in failed.stdout + failed.stderr
    assert (tmp_path / "kept/a").is_file()  # persisted: untouched
    assert not (tmp_path / "gone").exists()  # DVC's default: removed before the params check


# ------------------------------------------------------------------------------ params.yaml checked first
from spatialflow_repro.params_check import ROW_NAME_RULE, params_problems  # noqa: E402

PRESETS_LIST = "['+reg_cls', '+reg_mask', '+reg_stuff', '+subnets', 'baseline', 'spatialflow', 'spatialflow_dcn']"


def _set(path: str, value):
    """An edit of params: ``path`` dotted (keys with dots are not needed here)."""
    def edit(params: dict) -> None:
        *parents, last = path.split(".")
        target = params
        for key in parents:
            target = target[key]
        target[last] = value
    return edit


def _rename(group: str, old: str, new: str):
    def edit(params: dict) -> None:
        params[group][new] = params[group].pop(old)
    return edit


ROWS_OF_TINY = ", ".join(f"{group}.{name}" for group in ("search_rows", "rows", "pretrained_rows")
                         for name in yaml.safe_load((REPO_ROOT / "params.yaml").read_text())[group])
GRID_CASES = {
    "absolute row name": (_rename("search_rows", "t1_lambda_1_00", "/srv/evil"),
                          f"search_rows./srv/evil: bad row name '/srv/evil': {ROW_NAME_RULE}"),
    "dotted row name": (_rename("rows", "t2_reg_cls", "t2.reg"), f"rows.t2.reg: bad row name 't2.reg': {ROW_NAME_RULE}"),
    "upper-case pretrained row": (_rename("pretrained_rows", "t7_r101_coco", "T7"),
                                  f"pretrained_rows.T7: bad row name 'T7': {ROW_NAME_RULE}"),
    "test-dev row name": (_rename("testdev_rows", "t6_r101_dcn", "../t6"),
                          f"testdev_rows.../t6: bad row name '../t6': {ROW_NAME_RULE}"),
    "pretrained backbone name": (_rename("pretrain_backbones", "resnet18", "a b"),
                                 f"pretrain_backbones.a b: bad row name 'a b': {ROW_NAME_RULE}"),
    "init_from": (_set("pretrained_rows.t7_r101_coco.init_from", "/x"),
                  f"pretrained_rows.t7_r101_coco.init_from: bad row name '/x': {ROW_NAME_RULE}"),
    "figures row": (_set("figures.baseline_row", "t2 baseline"),
                    f"figures.baseline_row: bad row name 't2 baseline': {ROW_NAME_RULE}"),
    "unknown preset": (_set("rows.t2_baseline.preset", "nope"),
                       f"rows.t2_baseline.preset: unknown model preset 'nope'; choose one of {PRESETS_LIST}"),
    "backbone not in the profile": (_set("rows.t2_baseline.backbone", "R152"),
                                    "rows.t2_baseline (profile tiny): profile 'tiny' has no backbone 'R152'"),
    "size not in the profile": (_set("rows.t2_baseline.size", "1000"),
                                "rows.t2_baseline (profile tiny): profile 'tiny' has no image size '1000' "
                                "(sizes: ['600', '800', 'cityscapes'])"),
    "negative lr in the profile": (_set("profiles.tiny.training.schedule.coco.lr", -1),
                                   "profiles.tiny.training.schedule.coco.lr: Input should be greater than 0, got -1"),
    "negative lr of a row": (_set("rows.t2_baseline.schedule", {"lr": -1}),
                             "rows.t2_baseline (profile tiny): train.lr: Input should be greater than 0, got -1"),
    "unknown key in a row": (_set("rows.t2_baseline.colour", "red"), "rows.t2_baseline.colour: unknown key"),
    "a row's weight": (_set("rows.t2_baseline.stuff_loss_weight", "x"),
                       "rows.t2_baseline.stuff_loss_weight: Input should be a valid number, unable to parse string as a "
                       "number, got 'x'"),
    "a search row without its weight": (lambda p: p["search_rows"]["t1_lambda_0_50"].pop("stuff_loss_weight"),
                                        "search_rows.t1_lambda_0_50.stuff_loss_weight: required: a row of Table 1's "
                                        "search trains at its own weight"),
    "a profile's weight": (_set("profiles.tiny.stuff_loss_weight.cityscapes", -1),
                           "profiles.tiny.stuff_loss_weight.cityscapes: must be a number >= 0 or 'search', got -1"),
    "the weight under training.model": (
        _set("profiles.tiny.training.model.stuff_loss_weight", 0.5),
        f"{ROWS_OF_TINY} (profile tiny): profiles.tiny.training.model.stuff_loss_weight: set the stuff-loss weight "
        "in profiles.tiny.stuff_loss_weight (per dataset) or on the row, not here"),
    "the weight in a row override": (
        _set("profiles.tiny.training.row_overrides.t6_r101_dcn.model", {"stuff_loss_weight": 0.5}),
        "rows.t6_r101_dcn (profile tiny): profiles.tiny.training.row_overrides.t6_r101_dcn.model.stuff_loss_weight: "
        "set a row's stuff-loss weight on the row (rows.t6_r101_dcn.stuff_loss_weight), not here"),
    "an amp setting": (_set("profiles.tiny.training.amp", "fp8"),
                       "profiles.tiny.training.amp: must be one of none, bf16, fp16, bf16_if_native, got 'fp8'"),
    "a thread count": (_set("profiles.tiny.training.cpu_threads", 0),
                       "profiles.tiny.training.cpu_threads: must be an integer >= 1 or null, got 0"),
    "inference threshold": (_set("profiles.tiny.inference.detection.nms_thresh", 2),
                            "profiles.tiny.inference.detection: nms_thresh: must lie in [0, 1], got 2"),
    "merge threshold": (_set("profiles.tiny.inference.merge.coco.score_threshold", 3),
                        "profiles.tiny.inference.merge.coco: score_threshold: must lie in [0, 1], got 3"),
    "unknown test-dev TTA": (_set("testdev_rows.t6_r101_dcn.tta", "nope"),
                             "rows.t6_r101_dcn (profile tiny): profiles.tiny.inference.tta: has no preset 'nope' "
                             "(has ['cityscapes', 'coco'])"),
    "figures row not trained": (_set("figures.baseline_row", "t9"), "figures.baseline_row: 't9' is not a trained row"),
    "seeds of a row not trained": (_set("seeds.rows", ["t2_baseline", "t9"]), "seeds.rows: 't9' is not a trained row"),
    "the old seeds by table": (_set("seeds.tables", [1, 2, 3]), "seeds.tables: unknown key"),
    "unknown profile": (_set("profile", "nope"), "profile 'nope' is not one of ['cityscapes', 'coco', 'tiny']"),
}


@pytest.mark.parametrize("profile", ["tiny", "coco", "cityscapes"])
def test_the_real_grid_has_no_problem_in_any_profile(params, profile):
    assert params_problems({**params, "profile": profile}) == []


@pytest.mark.parametrize("case", sorted(GRID_CASES))
def test_a_bad_grid_is_one_line_naming_the_key(params, case):
    import copy

    edit, line = GRID_CASES[case]
    bad = copy.deepcopy(params)
    edit(bad)
    assert params_problems(bad) == [line]


def test_three_seeds_for_the_headline_rows_one_for_the_others(params):
    assert grid.row_seeds("t2_baseline", params) == [0, 1, 2] and grid.row_seeds("t3_spatialflow", params) == [0, 1, 2]
    assert grid.row_seeds("t2_subnets", params) == [0] and grid.row_seeds("t1_lambda_0_25", params) == [0]
    assert grid.row_seeds("t2_baseline", {**params, "seeds": {"values": [5]}}) == [5]


def test_one_bad_schedule_shared_by_many_rows_is_one_line(params):
    import copy

    bad = copy.deepcopy(params)
    for name in ("t2_baseline", "t2_subnets"):
        bad["rows"][name]["schedule"] = {"warmup_iters": -2}
    assert params_problems(bad) == ["rows.t2_baseline, rows.t2_subnets (profile tiny): train.warmup_iters: "
                                    "Input should be greater than or equal to 0, got -2"]


def test_dvc_stages_use_kedros_pipelines_option(repo_root):
    """``--pipeline`` is deprecated in Kedro 1 (a warning in every stage's output); ``--pipelines`` is not."""
    text = (repo_root / "dvc.yaml").read_text()
    commands = [line.split("cmd:", 1)[1].strip() for line in text.splitlines() if "cmd:" in line]
    assert commands and all(" --pipelines " in cmd and " --pipeline " not in cmd for cmd in commands)


def test_building_the_pipelines_warns_about_nothing(params):
    """Kedro warns about dataset names with a dot; ours are other rows' namespaced datasets, on purpose."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        build_pipelines(params)
    assert [str(w.message) for w in seen] == []
