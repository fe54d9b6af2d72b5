"""The common strong ReID baseline (Luo et al. 2019, "Bag of tricks"), and the pooling and
BNNeck classifier pieces that the PLA and MGN heads reuse."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progreid.models.output import ModelOutput

POOLINGS: dict[str, Callable[..., Tensor]] = {
    "avg": F.adaptive_avg_pool2d, "max": F.adaptive_max_pool2d}


def pool_stripes(feature_map: Tensor, pooling: str, stripes: int = 1) -> Tensor:
    """Pool ``B x C x H x W`` over ``stripes`` horizontal bands to ``B x C x stripes x 1``.

    ``stripes=1`` is global pooling. Bands follow adaptive pooling: band i covers rows
    ``floor(i H / s)`` to ``ceil((i + 1) H / s)`` (equal, disjoint bands when s divides H).
    Bands that do not divide H are pooled one by one (ONNX has no uneven adaptive pooling).
    """
    height = int(feature_map.shape[2])  # a constant when traced for export
    if height % stripes == 0:
        return POOLINGS[pooling](feature_map, (stripes, 1))
    bands = [feature_map[:, :, i * height // stripes:((i + 1) * height + stripes - 1) // stripes]
             for i in range(stripes)]
    return torch.cat([POOLINGS[pooling](band, 1) for band in bands], dim=2)


class NeckClassifier(nn.Module):
    """A feature's classifier, optionally behind a BNNeck (Luo et al. 2019).

    With ``bnneck`` the feature passes a BatchNorm1d (bias frozen at 0) before a bias-free linear
    classifier, and the normalised feature is the one used at test time; without it ``neck`` is
    the identity and the classifier has a bias. Use ``neck(feature)`` then ``classifier(...)``.
    """

    def __init__(self, dim: int, num_classes: int, bnneck: bool) -> None:
        super().__init__()
        self.neck: nn.Module = nn.Identity()
        if bnneck:
            self.neck = nn.BatchNorm1d(dim)
            self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=not bnneck)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if self.classifier.bias is not None:
            nn.init.zeros_(self.classifier.bias)


class Baseline(nn.Module):
    """Backbone -> global pooling -> optional linear reduction -> BNNeck -> classifier.

    The metric loss sees the pre-BN feature, cross-entropy the logits of the post-BN feature, and
    the test embedding is the post-BN feature (the pre-BN one without ``bnneck``).
    ``embedding_dim=None`` keeps the backbone's width (2048 for ResNet-50).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pooling: str = "avg",
                 embedding_dim: int | None = None, bnneck: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalization = backbone.normalization
        self.pooling = pooling
        self.reduction = (nn.Linear(backbone.out_channels, embedding_dim)
                          if embedding_dim is not None else None)
        self.embedding_dim = embedding_dim or backbone.out_channels
        self.head = NeckClassifier(self.embedding_dim, num_classes, bnneck)

    def forward(self, x: Tensor) -> ModelOutput | Tensor:
        feature = pool_stripes(self.backbone(x), self.pooling).flatten(1)
        if self.reduction is not None:
            feature = self.reduction(feature)
        embedding = self.head.neck(feature)
        if not self.training:
            return embedding
        return ModelOutput([self.head.classifier(embedding)], [feature], embedding)
