"""Measure a learning curve: val PQ / PQ_th / PQ_st of one row against training iterations.

    python scripts/learning_curve.py --row t2_baseline --length 800 --every 200 --out docs/learning_curve

Trains the row exactly as the pipeline does in the active profile of params.yaml (same experiment config,
seed 0), except for ``--length`` (decay steps scaled with it, same fractions) and a checkpoint every
``--every`` iterations; then evaluates every checkpoint on val with the profile's inference settings.
Writes ``<out>.csv`` and ``<out>.png``. This is how the tiny profile's schedule was chosen (docs/tables.md).
Needs the data (``dvc repro prepare_data``) and the pretrained backbones (``dvc repro pretrain_backbone``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import tempfile
from pathlib import Path

import yaml


PLOT_TITLE = "t2_baseline (seed 0 unless noted): each line is one training run of that length"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="t2_baseline")
    parser.add_argument("--length", type=int, default=800)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--stuff-loss-weight", type=float, default=None,
                        help="the paper's lambda (default: the row's in the profile; required where that is "
                             "Table 1's search)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest", default="data/03_primary/datasets.json",
                        help="the data sets' manifest (default: the one prepare_data writes)")
    parser.add_argument("--probe", type=float, default=None, metavar="SCORE",
                        help="also report PQ_th with this merge score threshold (a diagnostic: how far the "
                             "detector's scores are from the paper's threshold; the CSV keeps the paper's)")
    parser.add_argument("--out", default="docs/learning_curve")
    parser.add_argument("--work", default=None, help="run folder (default: a temporary folder)")
    parser.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                        help="override a schedule key of the row, e.g. --train lr=0.001 (YAML value)")
    parser.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model key of the row, e.g. --model mask_channels=32 (YAML value)")
    parser.add_argument("--transforms", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training-transform key of the row, e.g. --transforms min_size_range=null")
    parser.add_argument("--plot", action="append", default=[], metavar="LABEL=CSV",
                        help="no training: draw PQ_th of earlier runs' CSVs in one figure (<out>.png)")
    parser.add_argument("--title", default=PLOT_TITLE, help="the --plot figure's title")
    parser.add_argument("--floor", type=float, default=40.0,
                        help="the --plot figure's dotted line: the PQ_th a rule asks for (default 40, the baselines')")
    args = parser.parse_args(argv)
    if args.plot:
        plot_variants(dict(_label_csv(item) for item in args.plot), Path(args.out), args.title, args.floor)
        return 0

    from spatialflow.engine import checkpoint as ckpt
    from spatialflow.engine.config import load_experiment_config
    from spatialflow.engine.trainer import load_trained_model, train
    from spatialflow.inference.evaluate import evaluate
    from spatialflow.models.config import inference_config
    from spatialflow_repro.rows import (active_profile, experiment_config, inference_settings,
                                        row_stuff_loss_weight, trained_rows)

    params = yaml.safe_load(Path("params.yaml").read_text(encoding="utf-8"))
    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    row = trained_rows(params)[args.row]
    profile = active_profile(params)
    weight = args.stuff_loss_weight
    if weight is None:
        weight, _ = row_stuff_loss_weight(row, profile, selected=None)  # one line if the row uses the search
    work = args.work or tempfile.mkdtemp(prefix="learning-curve-")
    cfg_dict = experiment_config(args.row, row, params, manifest, weight, seed=args.seed, run_folder=work)
    old = cfg_dict["train"]
    cfg_dict["train"] = {**old, "length": args.length,
                         "decay_steps": [max(1, round(s * args.length / old["length"])) for s in old["decay_steps"]]}
    cfg_dict["train"].update(_key_values(args.train, "--train"))
    cfg_dict["model"].update(_key_values(args.model, "--model"))
    cfg_dict["data"]["transforms"].update(_key_values(args.transforms, "--transforms"))
    cfg_dict["run"].update(checkpoint_every=args.every, keep_checkpoints=10_000)
    cfg_dict["output_dir"] = work
    cfg = load_experiment_config(cfg_dict)
    train(cfg, resume=True, replace=True)

    inference = inference_config(inference_settings(row, profile))
    probe = ({"probe": dataclasses.replace(inference.merge, score_threshold=args.probe)}
             if args.probe is not None else None)
    run = Path(cfg.output_dir)
    points = []
    for path in [*ckpt.list_checkpoints(run / "checkpoints")]:
        model, model_cfg, _ = load_trained_model(path)
        model.inference = inference
        split, sizes = model_cfg.data.val, model_cfg.data.transforms
        metrics = evaluate(model, split.json, split.image_dir, run / "curve" / path.stem, png_dir=split.png_dir,
                           min_size=sizes.min_size, max_size=sizes.max_size, extra_merges=probe)
        iteration = int(ckpt.load_checkpoint(path)["iteration"])
        points.append({"iteration": iteration, "pq": round(metrics["All"]["pq"], 2),
                       "pq_th": round(metrics["Things"]["pq"], 2), "pq_st": round(metrics["Stuff"]["pq"], 2)})
        shown = dict(points[-1])
        if probe:
            shown[f"pq_th@{args.probe}"] = round(metrics["extra_merges"]["probe"]["Things"]["pq"], 2)
        print(json.dumps(shown), flush=True)
    write_curve(points, Path(args.out), title=f"{args.row}, profile {profile['name']}: "
                f"decay at {cfg.train.decay_steps} of {args.length} iterations")
    return 0


def _label_csv(item: str) -> tuple[str, list[dict]]:
    label, sep, path = item.rpartition("=")
    if not sep or not Path(path).is_file():
        raise SystemExit(f"--plot {item!r}: expected LABEL=CSV with an existing CSV file")
    with open(path, newline="", encoding="utf-8") as handle:
        return label, [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def plot_variants(curves: dict[str, list[dict]], out: Path, title: str = PLOT_TITLE, floor: float = 40.0) -> None:
    """Val PQ_th against iterations, one line per variant (``<out>.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    colors = plt.get_cmap("tab20").colors if len(curves) > 10 else plt.get_cmap("tab10").colors
    for k, (label, points) in enumerate(curves.items()):  # beyond 10 lines: tab20, so no two lines share a colour
        ax.plot([p["iteration"] for p in points], [p["pq_th"] for p in points], marker="o", label=label,
                color=colors[k % len(colors)])
    ax.axhline(floor, color="grey", linestyle=":", linewidth=1, label=f"PQ_th {floor:g}")
    ax.set_xlabel("training iterations")
    ax.set_ylabel("val PQ_th, percent")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)


def _key_values(items: list[str], flag: str) -> dict:
    """``["lr=0.001", "batch_size=8"]`` -> ``{"lr": 0.001, "batch_size": 8}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def write_curve(points: list[dict], out: Path, title: str) -> None:
    """``out``.csv (iteration, pq, pq_th, pq_st) and ``out``.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["iteration", "pq", "pq_th", "pq_st"])
        writer.writeheader()
        writer.writerows(points)
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    its = [p["iteration"] for p in points]
    for key, label in (("pq", "PQ"), ("pq_th", "PQ_th"), ("pq_st", "PQ_st")):
        ax.plot(its, [p[key] for p in points], marker="o", label=label)
    ax.set_xlabel("training iterations (batch 4)")
    ax.set_ylabel("val, percent")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
