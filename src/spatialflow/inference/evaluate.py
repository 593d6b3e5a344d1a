"""Run a trained model over a split: COCO-panoptic predictions (JSON + PNGs) and, with ground truth, PQ.

Without ground truth (COCO test-dev) only the predictions are written: they are the submission.
Outputs in ``out_dir``: ``panoptic_pred.json``, ``panoptic_pred/<image>.png``, ``metrics.json`` (with GT);
the same under ``out_dir/<name>/`` for every extra merge of the same predictions (e.g. ``box_fill``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from spatialflow.data.categories import CategoryMap
from spatialflow.errors import DataError
from spatialflow.panoptic.merge import MergeConfig
from spatialflow.utils.atomic import atomic_write_json

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_split_json(path: str | os.PathLike) -> dict:
    """A COCO(-panoptic) JSON with at least ``images`` and ``categories``."""
    from spatialflow.data.coco_panoptic import read_json

    data = read_json(path)
    for key in ("images", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise DataError(path, f"missing list '{key}'")
    return data


def image_infos_from_folder(image_dir: str | os.PathLike) -> list[dict]:
    """COCO ``images`` entries for every .jpg/.png in a folder (id = file stem)."""
    from spatialflow.data.coco_panoptic import image_size

    folder = Path(image_dir)
    if not folder.is_dir():
        raise DataError(folder, "image folder not found")
    infos = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        height, width = image_size(path)
        infos.append({"id": path.stem, "file_name": path.name, "height": height, "width": width})
    if not infos:
        raise DataError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)})")
    return infos


def predict_split(model: torch.nn.Module, image_infos: list[dict], image_dir: str | os.PathLike,
                  categories: list[dict], out_dir: str | os.PathLike, *, min_size: int, max_size: int,
                  tta=None, device: str | torch.device = "cpu", batch_size: int = 1,
                  progress: bool | None = None, extra_merges: Mapping[str, MergeConfig] | None = None) -> dict:
    """Predict every image and write COCO-panoptic ``panoptic_pred.json`` + PNGs; returns paths and timing.

    Images are resized to ``min_size``/``max_size`` for the network; predictions come back at the original
    size (or use ``tta``, an ``inference.TTAConfig``, for multi-scale + flip). ``extra_merges``
    (``{name: MergeConfig}``): the same detections, masks and stuff also merged with other settings (e.g. the
    authors' box fill), written to ``out_dir/<name>/``; no second forward pass. Their paths are in ``extra``."""
    from tqdm import tqdm

    from spatialflow.data.coco_panoptic import PanopticWriter, read_image
    from spatialflow.inference.predict import TTAConfig, predict
    from spatialflow.panoptic.merge import merge, to_coco_segments

    out_dir = Path(out_dir)
    targets = {None: out_dir, **{name: out_dir / name for name in (extra_merges or {})}}
    paths = {name: (folder / "panoptic_pred.json", folder / "panoptic_pred") for name, folder in targets.items()}
    category_map = CategoryMap.from_categories(categories)
    scales = tta if tta is not None else TTAConfig(scales=[(min_size, max_size)], flip=False)
    model = model.to(device).eval()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(PanopticWriter(pred_dir, pred_json, categories))
                   for name, (pred_json, pred_dir) in paths.items()}
        chunks = range(0, len(image_infos), batch_size)
        # progress None: a bar only on a terminal (tqdm's disable=None)
        for start in tqdm(chunks, desc="predict", unit="batch", disable=None if progress is None else not progress):
            infos = image_infos[start:start + batch_size]
            images = []
            for info in infos:
                array = read_image(Path(image_dir) / info["file_name"])
                images.append(torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0).to(device))
            for info, out in zip(infos, predict(model, images, scales)):
                for name, writer in writers.items():
                    panoptic = out["panoptic"] if name is None else merge(
                        out["masks"], out["scores"], out["labels"], out["stuff"],
                        other_index=model.cfg.num_stuff, config=extra_merges[name], boxes=out["boxes"])
                    writer.add(info, panoptic.panoptic_ids, to_coco_segments(panoptic, category_map))
    seconds = time.perf_counter() - started
    (pred_json, pred_dir) = paths[None]
    return {"pred_json": str(pred_json), "pred_dir": str(pred_dir), "images": len(image_infos),
            "inference_seconds": seconds,
            "images_per_second": len(image_infos) / seconds if seconds > 0 else 0.0,
            "extra": {name: {"pred_json": str(j), "pred_dir": str(d)} for name, (j, d) in paths.items() if name}}


def evaluate(model: torch.nn.Module, json_path: str | os.PathLike, image_dir: str | os.PathLike,
             out_dir: str | os.PathLike, *, png_dir: str | os.PathLike | None = None, min_size: int = 800,
             max_size: int = 1333, tta=None, device: str | torch.device = "cpu", batch_size: int = 1,
             max_images: int | None = None, progress: bool | None = None,
             extra_merges: Mapping[str, MergeConfig] | None = None) -> dict | None:
    """Predictions for the split ``json_path``/``image_dir``; with ground truth (``png_dir``) also
    PQ/SQ/RQ (pq_compute's dict + timing), written atomically to ``out_dir/metrics.json`` and returned.
    Without ground truth (test-dev) returns None after writing the predictions. ``extra_merges``: see
    :func:`predict_split`; their PQ dicts are returned under ``"extra_merges"`` (``{name: pq dict}``) and
    written to ``out_dir/<name>/metrics.json``."""
    data = read_split_json(json_path)
    infos = data["images"][:max_images] if max_images else data["images"]
    run = predict_split(model, infos, image_dir, data["categories"], out_dir, min_size=min_size,
                        max_size=max_size, tta=tta, device=device, batch_size=batch_size, progress=progress,
                        extra_merges=extra_merges)
    if png_dir is None:
        return None
    from spatialflow.panoptic.pq import pq_compute

    gt_json = Path(json_path)
    if max_images:  # evaluate against the same subset of the ground truth
        kept = {info["id"] for info in infos}
        subset = {**data, "images": infos,
                  "annotations": [a for a in data.get("annotations", []) if a["image_id"] in kept]}
        gt_json = Path(out_dir) / "gt_subset.json"
        atomic_write_json(gt_json, subset, indent=None)
    metrics = pq_compute(gt_json, png_dir, run["pred_json"], run["pred_dir"], progress=bool(progress))
    metrics.update({k: run[k] for k in ("images", "inference_seconds", "images_per_second")})
    atomic_write_json(Path(out_dir) / "metrics.json", metrics)
    if run["extra"]:
        metrics["extra_merges"] = {}
        for name, extra in run["extra"].items():
            metrics["extra_merges"][name] = pq_compute(gt_json, png_dir, extra["pred_json"], extra["pred_dir"])
            atomic_write_json(Path(out_dir) / name / "metrics.json", metrics["extra_merges"][name])
    return metrics
