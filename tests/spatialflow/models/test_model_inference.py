"""Inference: determinism, batched predict, test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialflow.inference.predict import TTA_PRESETS, TTAConfig, _flip_boxes, predict, resized_size
from spatialflow.errors import ConfigError
from spatialflow.models.config import model_config
from spatialflow.models.spatialflow import SpatialFlow

torch.set_num_threads(1)


def tiny_model(seed: int = 0) -> SpatialFlow:
    torch.manual_seed(seed)
    cfg = model_config("spatialflow", depth=18, fpn_channels=32, stuff_channels=32, mask_channels=32,
                       num_things=3, num_stuff=2)
    model = SpatialFlow(cfg, inference={"merge": {"stuff_area_limit": 16, "score_threshold": 0.3}}).eval()
    torch.nn.init.zeros_(model.cls_head.conv.bias)  # untrained scores ~0.5: plenty of detections
    return model


def images(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 56, 72, generator=g), torch.rand(3, 40, 33, generator=g)]


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("boxes", "scores", "labels", "masks", "stuff"):
            assert torch.equal(x[key], y[key]), key
        assert np.array_equal(x["panoptic"].panoptic_ids, y["panoptic"].panoptic_ids)
        assert x["panoptic"].segments == y["panoptic"].segments


def test_inference_is_deterministic_for_a_seed():
    torch.use_deterministic_algorithms(True)
    try:
        first = predict(tiny_model(), images())
        again = predict(tiny_model(), images())  # a fresh model from the same seed
        assert first[0]["boxes"].shape[0] > 0
        assert_same(first, again)
    finally:
        torch.use_deterministic_algorithms(False)


def test_predict_batches_equal_the_forward_and_restore_the_mode():
    model = tiny_model()
    model.train()
    out = predict(model, images(), batch_size=1)
    assert model.training  # mode restored
    with torch.no_grad():
        model.eval()
        direct = [model([img])[0] for img in images()]
    assert_same(out, direct)


def test_tta_one_scale_without_flip_equals_plain_inference():
    model = tiny_model()
    imgs = [images()[0]]  # 56 x 72: scale (56, 72) keeps it as it is (56/56 = 1, 72/72 = 1)
    plain = predict(model, imgs, return_stuff_logits=True)
    tta = predict(model, imgs, TTAConfig(scales=[(56, 72)], flip=False), return_stuff_logits=True)
    assert_same(plain, tta)
    assert torch.equal(plain[0]["stuff_logits"], tta[0]["stuff_logits"])


def test_tta_with_flip_and_scales_answers_at_the_original_size():
    model = tiny_model()
    out = predict(model, images(), TTAConfig(scales=[(40, 100), (80, 200)], flip=True), return_stuff_logits=True)
    for o, img in zip(out, images()):
        h, w = img.shape[-2:]
        assert o["masks"].shape[1:] == (h, w) and o["stuff"].shape == (h, w)
        assert o["stuff_logits"].shape == (3, h, w)
        assert o["boxes"].shape[0] <= 100
        assert float(o["boxes"][:, 2].max()) <= w + 1e-4 and float(o["boxes"][:, 3].max()) <= h + 1e-4


def test_flip_only_tta_of_a_mirror_symmetric_image_equals_plain_stuff():
    # For an image equal to its own mirror image the flipped pass sees the same pixels, and the
    # stuff logits map back mirrored: the average is (L + flip(L)) / 2.
    model = tiny_model()
    half = torch.rand(3, 32, 24, generator=torch.Generator().manual_seed(3))
    img = torch.cat([half, half.flip(-1)], dim=-1)  # 32 x 48, symmetric
    plain = predict(model, [img], return_stuff_logits=True)[0]["stuff_logits"]
    tta = predict(model, [img], TTAConfig(scales=[(32, 48)], flip=True), return_stuff_logits=True)[0]
    assert torch.allclose(tta["stuff_logits"], (plain + plain.flip(-1)) / 2, atol=1e-5)


def test_resize_rule_and_presets():
    # 480x640 to (800, 1333): 800/480 = 1.667 < 1333/640 = 2.083 -> 800 x round(640 * 1.667) = 1067
    assert resized_size((480, 640), 800, 1333) == (800, 1067)
    # 500x2000 to (800, 1333): 1333/2000 = 0.6665 wins -> round(333.25) = 333 x 1333
    assert resized_size((500, 2000), 800, 1333) == (333, 1333)
    assert TTA_PRESETS["coco"].scales == [(1000, 1500), (1200, 1800), (1400, 2100)]
    assert len(TTA_PRESETS["cityscapes"].scales) == 4 and TTA_PRESETS["cityscapes"].flip
    with pytest.raises(ConfigError):
        TTAConfig(scales=[])
    boxes = torch.tensor([[2.0, 1.0, 5.0, 4.0]])
    assert _flip_boxes(boxes, 10).tolist() == [[5.0, 1.0, 8.0, 4.0]]  # x: 10 - 5, 10 - 2


def test_evaluate_merges_the_same_predictions_twice(tmp_path):
    """``extra_merges`` re-merges the detections, masks and stuff of one forward pass: the main outputs and
    PQ are those of a plain evaluation; an extra merge with the main settings reproduces them exactly; one
    with the authors' box fill is written and scored next to them."""
    import json

    from spatialflow.data.synthetic import generate_synthetic
    from spatialflow.inference.evaluate import evaluate
    from spatialflow.panoptic.merge import MergeConfig

    val = generate_synthetic(tmp_path / "data", "shapes-coco", num_train=1, num_val=3, num_test=1, size=(48, 64))["val"]
    torch.manual_seed(0)
    cfg = model_config("spatialflow", depth=18, fpn_channels=32, stuff_channels=32, mask_channels=32,
                       num_things=8, num_stuff=6)
    main = MergeConfig(score_threshold=0.3, stuff_area_limit=16)
    model = SpatialFlow(cfg, inference={"merge": {"score_threshold": 0.3, "stuff_area_limit": 16}}).eval()
    torch.nn.init.zeros_(model.cls_head.conv.bias)  # untrained scores ~0.5: detections to merge
    kwargs = {"png_dir": val.png_dir, "min_size": 48, "max_size": 64}
    plain = evaluate(model, val.json_path, val.image_dir, tmp_path / "plain", **kwargs)
    both = evaluate(model, val.json_path, val.image_dir, tmp_path / "both", **kwargs,
                    extra_merges={"same": main, "box_fill": MergeConfig(score_threshold=0.3, stuff_area_limit=16,
                                                                        box_fill=True, box_fill_ratio=0.5)})
    extra = both.pop("extra_merges")
    strip = lambda m: {k: v for k, v in m.items() if k not in ("inference_seconds", "images_per_second")}  # noqa: E731
    assert strip(both) == strip(plain)
    assert extra["same"]["All"] == plain["All"] and extra["same"]["per_class"] == plain["per_class"]
    assert set(extra["box_fill"]) >= {"All", "Things", "Stuff"}
    for name in ("same", "box_fill"):
        assert (tmp_path / "both" / name / "panoptic_pred.json").is_file()
        assert json.loads((tmp_path / "both" / name / "metrics.json").read_text())["All"] == extra[name]["All"]
    same = json.loads((tmp_path / "both" / "same" / "panoptic_pred.json").read_text())["annotations"]
    assert same == json.loads((tmp_path / "plain" / "panoptic_pred.json").read_text())["annotations"]
    for png in sorted((tmp_path / "plain" / "panoptic_pred").iterdir()):
        assert png.read_bytes() == (tmp_path / "both" / "same" / "panoptic_pred" / png.name).read_bytes()


def test_thresholded_paste_equals_torchvisions_paste_bit_for_bit():
    """The eval forward's legacy paste (no full-size float image per mask) is torchvision's
    ``paste_masks_in_image(padding=1) > t`` exactly: random masks, boxes inside, across and partly outside
    the image, degenerate and sub-pixel boxes."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from spatialflow.models.spatialflow import paste_masks_thresholded

    g = torch.Generator().manual_seed(0)
    probs = torch.rand(7, 28, 28, generator=g)
    boxes = torch.tensor([[3.2, 4.7, 40.1, 30.9], [0.0, 0.0, 71.0, 55.0], [-10.5, -3.0, 20.0, 12.2],
                          [60.0, 45.0, 90.0, 70.0], [10.0, 10.0, 10.4, 10.3], [33.3, 2.2, 34.9, 50.0],
                          [5.0, 50.0, 66.6, 55.9]])
    for threshold in (0.5, 0.3):
        ours = paste_masks_thresholded(probs, boxes, (56, 72), threshold)
        theirs = paste_masks_in_image(probs[:, None], boxes, (56, 72), padding=1)[:, 0] > threshold
        assert ours.dtype == torch.bool and torch.equal(ours, theirs)
    assert paste_masks_thresholded(probs[:0], boxes[:0], (56, 72), 0.5).shape == (0, 56, 72)
