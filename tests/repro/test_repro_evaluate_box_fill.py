"""Every checkpoint with ground truth is also scored with the authors' box-fill merge."""

from __future__ import annotations

import pytest

from spatialflow.models.config import inference_config
from spatialflow_repro.pipelines.evaluate.nodes import box_fill_block, box_fill_inference


def test_box_fill_settings_are_the_main_ones_plus_the_authors_box_fill():
    main = {"score_thresh": 0.05, "candidate_ranking": "anchor_max",
            "merge": {"score_threshold": 0.37, "overlap_threshold": 0.25, "stuff_area_limit": 2048}}
    filled = box_fill_inference(main)
    assert filled == {"score_thresh": 0.05, "candidate_ranking": "anchor_max",
                      "merge": {"score_threshold": 0.37, "overlap_threshold": 0.25, "stuff_area_limit": 2048,
                                "box_fill": True, "box_fill_ratio": 0.5}}
    assert main["merge"] == {"score_threshold": 0.37, "overlap_threshold": 0.25, "stuff_area_limit": 2048}
    cfg = inference_config(filled)  # valid InferenceConfig values
    assert cfg.merge.box_fill and cfg.merge.box_fill_ratio == 0.5 and cfg.merge.overlap_threshold == 0.25


def test_no_second_evaluation_when_the_main_merge_already_fills_boxes():
    assert box_fill_inference({"merge": {"box_fill": True, "box_fill_ratio": 0.5}}) is None


def _metrics(pq: float) -> dict:
    return {"All": {"pq": pq, "sq": 0.8, "rq": pq / 0.8}, "Things": {"pq": pq + 2}, "Stuff": {"pq": pq - 3}}


def test_box_fill_block_summarises_its_seeds():
    seeds = [{"seed": 0, "predictions": "p0", "metrics": _metrics(40.0)},
             {"seed": 1, "predictions": "p1", "metrics": _metrics(42.0)}]
    block = box_fill_block({"merge": {"box_fill": True}}, seeds)
    assert block["merge"] == {"box_fill": True} and block["per_seed"] == seeds
    assert block["summary"]["pq"] == pytest.approx(41.0) and block["summary"]["pq_th"] == pytest.approx(43.0)
    assert block["summary_std"]["pq"] == pytest.approx(2 ** 0.5)  # sample std of 40, 42


def test_a_rows_metrics_keep_their_keys_and_gain_the_box_fill_block(monkeypatch, tmp_path, repo_root):
    """The node evaluates each seed once and asks for the box-fill merge of the same predictions (into
    <seed>/box_fill); the main keys are those of before, the box-fill PQ sits in ``box_fill``. The checkpoint
    evaluation itself (a trained model over a split) is replaced by fixed PQs: 40 / 42 for the main merge,
    45 / 47 with box fill."""
    import yaml

    import spatialflow_repro.pipelines.evaluate.nodes as nodes

    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    calls = []

    def evaluate_checkpoint(final_model, split_role, out_dir, tta, inference, extra_merges=None):
        calls.append((final_model, out_dir.name, inference["merge"].get("box_fill", False),
                      {name: m["box_fill"] for name, m in (extra_merges or {}).items()}))
        pq = {"m0": 40.0, "m1": 42.0}[final_model]
        return {"metrics": _metrics(pq), "submission": None, "extra_merges": {"box_fill": _metrics(pq + 5.0)}}

    monkeypatch.setattr(nodes, "evaluate_checkpoint", evaluate_checkpoint)
    monkeypatch.setattr(nodes.tracking, "log_evaluation", lambda *args, **kwargs: None)
    monkeypatch.chdir(tmp_path)
    training = {"seeds": [{"seed": 0, "final_model": "m0"}, {"seed": 1, "final_model": "m1"}],
                "stuff_loss_weight": 0.5, "ran": True}
    out = nodes.evaluate_row_val("t2_spatialflow", params, training, "predictions/t2_spatialflow")
    assert calls == [("m0", "seed0", False, {"box_fill": True}), ("m1", "seed1", False, {"box_fill": True})]
    assert out["summary"]["pq"] == pytest.approx(41.0) and out["inference"]["merge"].get("box_fill") is None
    assert out["box_fill"]["summary"]["pq"] == pytest.approx(46.0)
    assert out["box_fill"]["merge"]["box_fill"] is True and out["box_fill"]["merge"]["box_fill_ratio"] == 0.5
    assert [s["predictions"] for s in out["box_fill"]["per_seed"]] == [
        "predictions/t2_spatialflow/seed0/box_fill", "predictions/t2_spatialflow/seed1/box_fill"]


def test_every_rows_submission_method_is_a_valid_upload_name(repo_root):
    from spatialflow.panoptic.submission import name_field_problem
    from spatialflow.utils.yaml_io import read_yaml
    from spatialflow_repro.pipelines.evaluate.nodes import submission_method
    from spatialflow_repro.rows import trained_rows

    rows = trained_rows(read_yaml(repo_root / "params.yaml"))
    assert submission_method("t4_r101_800") == "spatialflow-t4-r101-800"
    assert [name for name in rows if name_field_problem(submission_method(name))] == []


def test_a_row_without_a_training_record_is_one_line(repo_root):
    from spatialflow.errors import ConfigError
    from spatialflow.utils.yaml_io import read_yaml
    from spatialflow_repro.pipelines.evaluate import nodes

    with pytest.raises(ConfigError, match="row 't2_baseline' has no training record yet"):
        nodes.evaluate_row_val("t2_baseline", read_yaml(repo_root / "params.yaml"), None, "predictions")
