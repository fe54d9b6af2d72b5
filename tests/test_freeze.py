"""model.frozen_stride: the backbone's early layers keep their weights and get no gradient."""

from __future__ import annotations

import pytest
import torch

from progreid.config import ConfigError, load_config
from progreid.models import build_model
from progreid.models.backbones import build_backbone
from progreid.models.freeze import freeze_early_layers, layers_up_to_stride


def output_strides(backbone: torch.nn.Module, size: int = 64) -> list[tuple[torch.nn.Module, int]]:
    """Every layer with weights in forward order, with the stride of its output (independent of
    the module under test: read off a forward pass of a larger input)."""
    seen: list[tuple[torch.nn.Module, int]] = []
    hooks = [m.register_forward_hook(lambda m, _i, out: seen.append((m, size // out.shape[-1])))
             for m in backbone.modules() if list(m.parameters(recurse=False))]
    with torch.no_grad():
        backbone.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("arch", ["mobilenetv2", "efficientnet_lite0", "resnet18"])
@pytest.mark.parametrize("max_stride", [2, 8, 16])
def test_the_frozen_layers_are_the_prefix_up_to_the_stride(arch, max_stride):
    backbone = build_backbone(arch)
    layers = output_strides(backbone, 128)
    frozen = layers_up_to_stride(backbone, max_stride)
    assert [m for m, _ in layers[:len(frozen)]] == frozen  # a prefix, in forward order
    assert all(stride <= max_stride for _, stride in layers[:len(frozen)])
    assert layers[len(frozen)][1] > max_stride  # stops at the first layer past the stride


def test_freezing_counts_and_stops_the_gradient_of_exactly_those_layers():
    backbone = build_backbone("mobilenetv2")
    frozen = {id(p) for m in layers_up_to_stride(backbone, 8) for p in m.parameters(False)}
    count = freeze_early_layers(backbone, 8)
    assert count == sum(p.numel() for p in backbone.parameters() if id(p) in frozen) > 0
    assert all(p.requires_grad == (id(p) not in frozen) for p in backbone.parameters())
    assert freeze_early_layers(build_backbone("mobilenetv2"), 0) == 0


def test_a_training_step_leaves_the_frozen_weights_and_moves_the_rest():
    torch.manual_seed(0)
    model = build_model(5, "baseline", "mobilenetv2", last_stride=2, frozen_stride=4).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-2)
    logits = model(torch.randn(4, 3, 64, 32)).logits[0]
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable and len(trainable) < len(before)
    assert "backbone.features.0.0.weight" not in trainable  # the stem is frozen


def test_the_config_accepts_only_strides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {backbone: mobilenetv2, frozen_stride: 8}\n")
    assert load_config(recipe).model.frozen_stride == 8
    with pytest.raises(ConfigError, match="frozen_stride"):
        load_config(recipe, ["model.frozen_stride=3"])
