"""The Multiple Granularity Network (Wang et al., ACM MM 2018), the network of TRC-MGN."""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import Tensor, nn

from progreid.models.baseline import NeckClassifier, pool_stripes
from progreid.models.output import ModelOutput
from progreid.models.resnet import ResNet

#: Horizontal stripes of each branch: the global branch, then the 2- and 3-stripe part branches.
BRANCH_STRIPES = (1, 2, 3)


class MGN(nn.Module):
    """MGN: a shared trunk (stem, layer1, layer2, layer3[0]) and three branches, each with its
    own copy of layer3[1:] and layer4.

    The global branch downsamples in layer4 (stride 2); the part branches use ``part_stride``
    (1 in the paper). Each branch is globally pooled and the part branches also per stripe,
    giving 8 features in the order ``[g1, g2, g3, p2_1, p2_2, p3_1, p3_2, p3_3]``; each is
    reduced by its own 1x1 conv + BN + ReLU to ``embedding_dim`` (256) and has its own
    classifier (8 logits). The metric loss (triplet, or TRC in TRC-MGN, TRC Sec. V-E) sees the
    three reduced global features; the test embedding concatenates all 8 (2048-d).
    ``bnneck`` adds a BNNeck before each classifier (not in the paper).
    """

    def __init__(self, backbone: ResNet, num_classes: int, embedding_dim: int = 256,
                 part_stride: int = 1, pooling: str = "max", bnneck: bool = False) -> None:
        super().__init__()
        self.pooling = pooling
        self.normalization = backbone.normalization
        self.trunk = nn.Sequential(OrderedDict(
            conv1=backbone.conv1, bn1=backbone.bn1, relu=backbone.relu, maxpool=backbone.maxpool,
            layer1=backbone.layer1, layer2=backbone.layer2,
            layer3=nn.Sequential(OrderedDict([("0", backbone.layer3[0])]))))
        # torchvision block indices are kept in the names (branches.i.layer3.1, ...).
        rest = [(str(i), block) for i, block in enumerate(backbone.layer3) if i > 0]
        branches = []
        for stripes in BRANCH_STRIPES:
            layer4 = copy.deepcopy(backbone.layer4)
            layer4[0].set_stride(2 if stripes == 1 else part_stride)
            branches.append(nn.Sequential(OrderedDict(
                layer3=nn.Sequential(OrderedDict(copy.deepcopy(rest))), layer4=layer4)))
        self.branches = nn.ModuleList(branches)
        num_features = len(BRANCH_STRIPES) + sum(s for s in BRANCH_STRIPES if s > 1)
        self.reductions = nn.ModuleList(
            self._reduction(backbone.out_channels, embedding_dim) for _ in range(num_features))
        self.heads = nn.ModuleList(
            NeckClassifier(embedding_dim, num_classes, bnneck) for _ in range(num_features))
        self.embedding_dim = embedding_dim * num_features

    @staticmethod
    def _reduction(channels: int, dim: int) -> nn.Sequential:
        conv = nn.Conv2d(channels, dim, 1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_in")
        return nn.Sequential(conv, nn.BatchNorm2d(dim), nn.ReLU(inplace=True))

    def pooled_features(self, x: Tensor) -> list[Tensor]:
        """The 8 pooled ``B x C x 1 x 1`` features, globals first, then stripes top to bottom."""
        shared = self.trunk(x)
        maps = [branch(shared) for branch in self.branches]
        return [pool_stripes(m, self.pooling) for m in maps] + [
            part for m, stripes in zip(maps, BRANCH_STRIPES, strict=True) if stripes > 1
            for part in pool_stripes(m, self.pooling, stripes).split(1, dim=2)]

    def forward(self, x: Tensor) -> ModelOutput | Tensor:
        reduced = [reduction(pooled).flatten(1) for reduction, pooled
                   in zip(self.reductions, self.pooled_features(x), strict=True)]
        normed = [head.neck(feature) for head, feature in zip(self.heads, reduced, strict=True)]
        embedding = torch.cat(normed, dim=1)
        if not self.training:
            return embedding
        logits = [head.classifier(f) for head, f in zip(self.heads, normed, strict=True)]
        return ModelOutput(logits, reduced[:len(BRANCH_STRIPES)], embedding)
