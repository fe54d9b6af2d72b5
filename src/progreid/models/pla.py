"""The PLA network: a backbone, global max pooling, a cross-entropy head and a triplet head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from progreid.models.baseline import NeckClassifier, pool_stripes
from progreid.models.output import ModelOutput


def join_heads(features: list[Tensor]) -> Tensor:
    """The test feature: each head's feature L2-normalised, then concatenated (PLA Sec. 3.1's
    ``[ce, triplet]``, 2048-d for ResNet-50).

    The paper does not say how the two halves are scaled. Raw, their scales are whatever each
    loss made them: on CUHK01 after 4 epochs of ``configs/cuhk01/pla-fixed.yaml`` the CE half has
    4.3x the triplet half's norm and 65 % of the squared query-gallery distance, and the raw
    concatenation ranks below the triplet half alone. Unit halves need no statistics, hold for
    every backbone, loss weight and the BNNeck variant, and ranked best of the choices that need
    no data (docs/training.md, "PLA: candidates, explorations and test feature, measured")."""
    return torch.cat([F.normalize(feature, dim=1) for feature in features], dim=1)


class PLANet(nn.Module):
    """PLA Sec. 3.1 (Fig. 2) and its Sec. 4.3 ablation variants, on any backbone.

    The globally pooled backbone feature feeds 1x1 convolutions: the CE head (``head_dim``,
    1024 in the paper) goes to a classifier, the triplet head (``head_dim``) to the metric loss,
    and the test embedding is their concatenation ``[ce, triplet]`` (2048-d) with each half
    L2-normalised (:func:`join_heads`); the losses see the raw features. With only one head
    (``ce`` or ``triplet`` False) that head is ``2 * head_dim`` wide, so all variants give an
    embedding of the same size. ``bnneck`` puts a BNNeck between the CE head and its classifier
    (not in the paper); the embedding then takes the normalised CE feature.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, ce: bool = True, triplet: bool = True,
                 head_dim: int = 1024, pooling: str = "max", bnneck: bool = False) -> None:
        super().__init__()
        if not (ce or triplet):
            raise ValueError("PLANet needs at least one head (ce or triplet)")
        self.backbone = backbone
        self.normalization = backbone.normalization
        self.pooling = pooling
        dim = head_dim if ce and triplet else 2 * head_dim
        channels = backbone.out_channels
        self.ce_head = nn.Conv2d(channels, dim, 1) if ce else None
        self.ce_classifier = NeckClassifier(dim, num_classes, bnneck) if ce else None
        self.triplet_head = nn.Conv2d(channels, dim, 1) if triplet else None
        self.embedding_dim = dim * (int(ce) + int(triplet))

    def forward(self, x: Tensor) -> ModelOutput | Tensor:
        pooled = pool_stripes(self.backbone(x), self.pooling)
        ce = [] if self.ce_head is None else [
            self.ce_classifier.neck(self.ce_head(pooled).flatten(1))]
        logits = [self.ce_classifier.classifier(f) for f in ce] if self.training else []
        metric = [] if self.triplet_head is None else [self.triplet_head(pooled).flatten(1)]
        embedding = join_heads(ce + metric)
        return ModelOutput(logits, metric, embedding) if self.training else embedding
