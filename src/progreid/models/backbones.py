"""Every backbone by name: the ResNets, MobileNetV2 and EfficientNet-Lite0/1/2.

A backbone is a module whose ``forward`` returns its last feature map, with ``arch``, ``width``,
``out_channels`` and ``normalization`` (the per-channel ``(mean, std)``, in 0-1 units, that its
ImageNet weights were trained with, so every consumer normalises images the same way).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from progreid.models.efficientnet_lite import (
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
)
from progreid.models.init import check_backbone_args
from progreid.models.mobilenetv2 import MobileNetV2
from progreid.models.resnet import resnet18, resnet34, resnet50

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
    "mobilenetv2": MobileNetV2,
    "efficientnet_lite0": efficientnet_lite0, "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
}
RESNETS = ("resnet18", "resnet34", "resnet50")


def build_backbone(arch: str, width: float = 1.0, last_stride: int = 2,
                   num_classes: int | None = None) -> nn.Module:
    """A backbone by name; ``num_classes`` adds its ImageNet classifier head."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone {arch!r}; expected one of {sorted(BACKBONES)}")
    check_backbone_args(width, last_stride)
    return BACKBONES[arch](width=width, last_stride=last_stride, num_classes=num_classes)
