"""ResNet-18/34/50 (He et al. 2016) with torchvision's module layout and parameter names.

The Bottleneck is torchvision's "v1.5" (stride on the 3x3 convolution), so torchvision ImageNet
state dicts load key for key. Two ReID additions: the stride of the last stage (``last_stride``;
1 keeps a twice larger final feature map) and a channel ``width`` multiplier for tiny CPU models.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial

import torch
from torch import Tensor, nn

from progreid.data.transforms import IMAGENET_NORMALIZATION
from progreid.models.init import init_conv_bn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class _Block(nn.Module, ABC):
    """Residual block: ``relu(residual(x) + shortcut(x))``; subclasses name their strided conv."""

    expansion: int
    strided_conv: str
    relu: nn.ReLU
    downsample: nn.Sequential | None

    @abstractmethod
    def residual(self, x: Tensor) -> Tensor:
        """The residual branch (convolutions and batch norms, before the addition)."""

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)

    def set_stride(self, stride: int) -> None:
        """Change the block's spatial stride in place (its strided conv and its shortcut)."""
        if self.downsample is None:
            raise ValueError("set_stride needs a block with a downsample shortcut "
                             "(the first block of a stage)")
        getattr(self, self.strided_conv).stride = (stride, stride)
        self.downsample[0].stride = (stride, stride)


class BasicBlock(_Block):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1
    strided_conv = "conv1"

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Sequential | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(_Block):
    """1x1 reduce, 3x3 (strided, torchvision v1.5), 1x1 expand by 4 (ResNet-50)."""

    expansion = 4
    strided_conv = "conv2"

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Sequential | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _make_stage(block: type[_Block], inplanes: int, planes: int, blocks: int,
                stride: int) -> nn.Sequential:
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(_conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """ResNet trunk; ``forward`` returns the last feature map (``B x out_channels x h x w``).

    With ``num_classes`` it also has torchvision's ``avgpool`` + ``fc`` ImageNet head (used by
    :meth:`classify`), so parameter counts and state-dict keys equal torchvision's exactly.
    """

    normalization = IMAGENET_NORMALIZATION

    def __init__(self, arch: str, block: type[_Block], layers: tuple[int, int, int, int],
                 width: float = 1.0, last_stride: int = 2, num_classes: int | None = None) -> None:
        super().__init__()
        self.arch, self.width = arch, width
        planes = [max(1, round(base * width)) for base in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        exp = block.expansion
        self.layer1 = _make_stage(block, planes[0], planes[0], layers[0], 1)
        self.layer2 = _make_stage(block, planes[0] * exp, planes[1], layers[1], 2)
        self.layer3 = _make_stage(block, planes[1] * exp, planes[2], layers[2], 2)
        self.layer4 = _make_stage(block, planes[2] * exp, planes[3], layers[3], last_stride)
        self.out_channels = planes[3] * exp
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(self.out_channels, num_classes)
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits through ``avgpool`` + ``fc`` (only when built with ``num_classes``)."""
        if not hasattr(self, "fc"):
            raise RuntimeError(f"this {self.arch} was built without an fc head (num_classes=None)")
        return self.fc(torch.flatten(self.avgpool(self(x)), 1))


resnet18 = partial(ResNet, "resnet18", BasicBlock, (2, 2, 2, 2))
resnet34 = partial(ResNet, "resnet34", BasicBlock, (3, 4, 6, 3))
resnet50 = partial(ResNet, "resnet50", Bottleneck, (3, 4, 6, 3))
