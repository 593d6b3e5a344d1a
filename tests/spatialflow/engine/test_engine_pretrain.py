"""The tiny profile's ImageNet stand-in: pretrained once, saved like torchvision's ImageNet files, loaded
through the same code path, frozen like them."""

from __future__ import annotations

import pytest
import torch

from spatialflow.engine.pretrain import PretrainConfig, pretrain_backbone
from spatialflow.errors import ConfigError
from spatialflow.models.backbone import ResNetFPN
from spatialflow.models.config import model_config
from spatialflow.models.spatialflow import SpatialFlow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("pretrained") / "resnet18" / "weights.pt"
    summary = pretrain_backbone(PretrainConfig(depth=18, iterations=4, batch_size=4, num_images=8), path)
    return path, summary


def test_pretraining_writes_a_torchvision_state_dict_with_real_batchnorm_statistics(weights):
    path, summary = weights
    state = torch.load(path, weights_only=True)
    assert not any(k.startswith("fc.") for k in state) and "layer4.1.bn2.running_var" in state
    assert not torch.allclose(state["bn1.running_var"], torch.ones_like(state["bn1.running_var"]))
    assert summary["iterations"] == 4 and 0.0 <= summary["held_out_label_accuracy"] <= 1.0
    assert oct(path.stat().st_mode & 0o777) != "0o600"  # readable by the team (umask)


def test_the_stand_in_loads_through_the_imagenet_code_path_and_is_frozen(weights):
    path, _ = weights
    state = torch.load(path, weights_only=True)
    fpn = ResNetFPN(18, 16, pretrained=True, weights=str(path), frozen_stages=1)
    assert torch.equal(fpn.body.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    assert torch.equal(fpn.body.bn1.running_mean, state["bn1.running_mean"])  # frozen statistics, as ImageNet's
    assert not any(p.requires_grad for p in fpn.body.layer1.parameters())  # stem + res2 frozen
    assert all(p.requires_grad for p in fpn.body.layer2.parameters())
    model = SpatialFlow(model_config("baseline", depth=18, fpn_channels=16, stuff_channels=16, stuff_groups=4,
                                     mask_channels=16, pretrained_backbone=True, backbone_weights=str(path)))
    assert torch.equal(model.backbone.body.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_missing_stand_in_weights_are_one_line(tmp_path):
    from spatialflow.errors import CheckpointError

    with pytest.raises(CheckpointError, match="run the pretrain_backbone stage"):
        ResNetFPN(18, 16, pretrained=True, weights=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize(("values", "message"), [
    ({"depth": 20}, "pretrain.depth: must be 18, 34, 50 or 101, got 20"),
    ({"iterations": 0}, "pretrain.iterations: must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, "pretrain.batch_size: must be an integer >= 1, got 2.5"),
    ({"lr": -0.1}, "pretrain.lr: must be > 0, got -0.1"),
    ({"cpu_threads": 0}, "pretrain.cpu_threads: must be an integer >= 1 or null, got 0"),
])
def test_bad_pretraining_settings_are_one_line(values, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        PretrainConfig(**values)


def test_pretraining_computes_with_its_cpu_threads_and_gives_the_callers_back(tmp_path, monkeypatch):
    from spatialflow.engine import pretrain

    seen: list[int] = []
    build = pretrain.build_classifier

    def recording(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
        return model

    monkeypatch.setattr(pretrain, "build_classifier", recording)
    torch.set_num_threads(1)
    pretrain_backbone(PretrainConfig(depth=18, iterations=2, batch_size=2, num_images=4, cpu_threads=2),
                      tmp_path / "weights.pt")
    assert seen and set(seen) == {2}  # every training and held-out step
    assert torch.get_num_threads() == 1
