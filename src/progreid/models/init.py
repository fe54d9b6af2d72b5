"""What every backbone shares: argument checks and the initialisation of fresh layers."""

from __future__ import annotations

from torch import nn


def check_backbone_args(width: float, last_stride: int) -> None:
    """A channel multiplier above 0 and a last stride of 1 or 2."""
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ValueError(f"width must be a number > 0, got {width!r}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")


def init_conv_bn(network: nn.Module) -> None:
    """He (fan-out) initialisation of convolutions; batch norms as the identity."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
