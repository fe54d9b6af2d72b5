"""Parameter and Mul-Add counts of a network's inference pass (PLA Sec. 4.5).

The counts run on a copy of the model on the ``meta`` device: no weights are touched and no
memory is used for activations, so even MGN at full size is counted instantly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Counts:
    """``parameters``: all of the model; ``inference_parameters``: those of the modules that the
    eval-mode forward calls (classifiers excluded); ``mul_adds``: per image (FLOPs / 2)."""

    parameters: int
    inference_parameters: int
    mul_adds: int


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def count_inference(model: nn.Module, height: int, width: int) -> Counts:
    """Count parameters and Mul-Adds of one ``height x width`` image through ``model.eval()``.

    Mul-Adds are half the FLOPs that :class:`torch.utils.flop_counter.FlopCounterMode` counts
    (convolutions and matrix products; batch norm, activations and pooling are not counted, as
    in the usual Mul-Add figures).
    """
    if height < 1 or width < 1:
        raise ValueError(f"input size must be positive, got {height} x {width}")
    meta = copy.deepcopy(model).to("meta").eval()
    called: dict[int, nn.Module] = {}

    def record(module: nn.Module, _inputs: object, _output: object) -> None:
        called[id(module)] = module

    hooks = [module.register_forward_hook(record) for module in meta.modules()]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            meta(torch.empty(1, 3, height, width, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    used = {id(p): p for m in called.values() for p in m.parameters(recurse=False)}
    return Counts(parameters=count_parameters(model),
                  inference_parameters=sum(p.numel() for p in used.values()),
                  mul_adds=counter.get_total_flops() // 2)
