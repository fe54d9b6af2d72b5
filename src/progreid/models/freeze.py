"""Keep a backbone's early layers at their pretrained weights (no gradient, no backward pass).

The layers that work at high resolution cost the most time per parameter on a CPU and learn
the most generic features (edges, colours), so fine-tuning from ImageNet can leave them as they
are: MobileNetV2 at 160 x 64 trains 1.8x as many images a second with everything up to output
stride 8 frozen (docs/performance.md). Batch norms keep normalising with batch statistics.
"""

from __future__ import annotations

import torch
from torch import nn

_PROBE_SIZE = 64  # a square probe input; any size divisible by the backbone's total stride


def layers_up_to_stride(backbone: nn.Module, max_stride: int) -> list[nn.Module]:
    """The layers with weights that run, in forward order, before the first one whose output is
    smaller than 1 / ``max_stride`` of the input (found by one forward pass on a probe image)."""
    executed: list[tuple[nn.Module, int]] = []

    def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        executed.append((module, _PROBE_SIZE // output.shape[-1]))

    hooks = [module.register_forward_hook(record) for module in backbone.modules()
             if list(module.parameters(recurse=False))]
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            backbone(torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE))
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    frozen: list[nn.Module] = []
    for module, stride in executed:
        if stride > max_stride:
            break
        frozen.append(module)
    return frozen


def freeze_early_layers(backbone: nn.Module, max_stride: int) -> int:
    """Stop the gradient of every layer :func:`layers_up_to_stride` finds; returns how many
    parameters that leaves untrained (0 when ``max_stride`` is 0)."""
    if max_stride == 0:
        return 0
    parameters = [p for module in layers_up_to_stride(backbone, max_stride)
                  for p in module.parameters(recurse=False)]
    for parameter in parameters:
        parameter.requires_grad_(False)
    return sum(p.numel() for p in parameters)
