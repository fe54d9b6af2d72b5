"""EfficientNet-Lite0/1/2: the mobile variant of EfficientNet (Tan & Le, "EfficientNet:
Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019), as defined by the
TensorFlow TPU reference implementation ``models/official/efficientnet/lite``.

Lite differs from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of swish, stem (32)
and head (1280) channels fixed rather than scaled by the width coefficient, and the repeat counts
of the first and last stages fixed rather than scaled by the depth coefficient. Convolutions use
TensorFlow "SAME" padding (asymmetric for stride 2), computed from the actual input size.

Module and parameter names follow the EfficientNet-PyTorch convention of the TF-converted weights
(``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so those ImageNet state dicts load
key for key. Two ReID additions, as for the ResNets: ``last_stride`` (1 keeps a twice larger final
feature map) and a channel ``width`` multiplier of the block channels (random init only).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progreid.models.init import check_backbone_args, init_conv_bn

# The EfficientNet-B0 stages: (expand ratio, kernel, stride, repeats, in channels, out channels).
B0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (6, 3, 2, 2, 16, 24),
    (6, 5, 2, 2, 24, 40),
    (6, 3, 2, 3, 40, 80),
    (6, 5, 1, 3, 80, 112),
    (6, 5, 2, 4, 112, 192),
    (6, 3, 1, 1, 192, 320),
)
# name: (width coefficient, depth coefficient, dropout before the classifier), as in TF lite.
VARIANTS: dict[str, tuple[float, float, float]] = {
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
}
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's default
BN_MOMENTUM = 0.01  # TF decay 0.99
# The TF lite input pipeline, (x - 127) / 128, in 0-1 units; it fits the weights' stem batch-norm
# statistics (measured on real person images, see tests/test_efficientnet_lite.py), ImageNet's
# (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) does not.
LITE_NORMALIZATION: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (127 / 255,) * 3, (128 / 255,) * 3)


def round_filters(channels: int, multiplier: float, divisor: int = 8) -> int:
    """Scale ``channels`` and round to a multiple of ``divisor`` (never below 90 % of the scaled
    value), TF EfficientNet's ``round_filters``."""
    scaled = channels * multiplier
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one spatial axis: ``(before, after)``, the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TF "SAME" padding computed from the input size in ``forward``
    (Python ints from ``x.shape``, so tracing/ONNX export at a fixed input size is exact)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = same_padding(int(x.shape[-2]), self.kernel_size[0], self.stride[0])
        left, right = same_padding(int(x.shape[-1]), self.kernel_size[1], self.stride[1])
        if top == bottom and left == right:  # symmetric: let the convolution pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                            self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))  # padding=0


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expand (absent for ratio 1), depthwise
    kxk (strided), 1x1 linear projection; identity shortcut when stride 1 and channels agree."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int,
                 stride: int) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand_ratio = expand_ratio
        if expand_ratio != 1:
            self._expand_conv = Conv2dSame(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self._act = nn.ReLU6(inplace=True)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if self.expand_ratio != 1:
            out = self._act(self._bn0(self._expand_conv(out)))
        out = self._act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.use_residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk; ``forward`` returns the head feature map (``B x 1280 x h x w``,
    after the 1x1 head convolution, batch norm and ReLU6; no pooling).

    ``arch`` selects the coefficients (``efficientnet_lite0/1/2``); ``width`` further scales the
    block channels (1.0 is the pretrained layout); ``last_stride`` 1 removes the stride of the
    last stride-2 stage (the 192-channel stage of Lite0). With ``num_classes`` it also has the
    ImageNet head ``_fc`` (used by :meth:`classify`), so the state-dict keys equal the files'.
    """

    normalization = LITE_NORMALIZATION

    def __init__(self, arch: str = "efficientnet_lite0", width: float = 1.0, last_stride: int = 2,
                 num_classes: int | None = None) -> None:
        super().__init__()
        if arch not in VARIANTS:
            raise ValueError(f"unknown backbone {arch!r}; expected one of {sorted(VARIANTS)}")
        check_backbone_args(width, last_stride)
        width_coef, depth_coef, dropout = VARIANTS[arch]
        self.arch, self.width, self.last_stride = arch, width, last_stride
        self.out_channels = HEAD_CHANNELS
        multiplier = width_coef * width
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        self._act = nn.ReLU6(inplace=True)

        last_strided = max(i for i, stage in enumerate(B0_STAGES) if stage[2] == 2)
        blocks: list[MBConvBlock] = []
        self.stage_starts: list[int] = []  # index of each stage's first block in ``_blocks``
        channels = STEM_CHANNELS
        for index, (expand, kernel, stride, repeats, _, out) in enumerate(B0_STAGES):
            out = round_filters(out, multiplier)
            if 0 < index < len(B0_STAGES) - 1:  # lite: first and last stage repeats are fixed
                repeats = math.ceil(depth_coef * repeats)  # scaled by the depth, rounded up
            if index == last_strided:
                stride = last_stride
            self.stage_starts.append(len(blocks))
            for repeat in range(repeats):
                blocks.append(MBConvBlock(channels, out, expand, kernel,
                                          stride if repeat == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        if num_classes is not None:
            self._avg_pooling = nn.AdaptiveAvgPool2d(1)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._act(self._bn1(self._conv_head(x)))

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits (only when built with ``num_classes``)."""
        if not hasattr(self, "_fc"):
            raise RuntimeError(f"this {self.arch} was built without an _fc head (num_classes=None)")
        return self._fc(self._dropout(torch.flatten(self._avg_pooling(self(x)), 1)))


efficientnet_lite0 = partial(EfficientNetLite, "efficientnet_lite0")
efficientnet_lite1 = partial(EfficientNetLite, "efficientnet_lite1")
efficientnet_lite2 = partial(EfficientNetLite, "efficientnet_lite2")
