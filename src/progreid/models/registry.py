"""``build_model``: every progreid network by name, with its paper defaults."""

from __future__ import annotations

from torch import nn

from progreid.models.backbones import BACKBONES, RESNETS, build_backbone
from progreid.models.baseline import POOLINGS, Baseline
from progreid.models.freeze import freeze_early_layers
from progreid.models.init import check_backbone_args
from progreid.models.mgn import MGN
from progreid.models.pla import PLANet
from progreid.models.pretrained import load_pretrained

#: (pooling, bnneck) each architecture uses when the caller passes None: the strong baseline's
#: average pooling + BNNeck; PLA (Sec. 4.3) and MGN (Wang et al.) plain heads after max pooling.
PAPER_DEFAULTS: dict[str, tuple[str, bool]] = {
    "baseline": ("avg", True),
    "pla": ("max", False),
    "pla_ce": ("max", False),
    "pla_triplet": ("max", False),
    "mgn": ("max", False),
}
#: Which PLA heads each PLA variant has: (cross-entropy head, triplet head).
PLA_HEADS = {"pla": (True, True), "pla_ce": (True, False), "pla_triplet": (False, True)}


def check_model(num_classes: int, name: str, backbone: str, width: float, last_stride: int,
                pooling: str | None, embedding_dim: int | None) -> None:
    """Refuse, with a ValueError naming it, an argument :func:`build_model` cannot build."""
    if name not in PAPER_DEFAULTS:
        raise ValueError(f"unknown model name {name!r}; expected one of {sorted(PAPER_DEFAULTS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    if name == "mgn" and backbone not in RESNETS:
        raise ValueError(f"model 'mgn' needs a ResNet backbone (its branches copy ResNet's "
                         f"layer3 and layer4); got backbone {backbone!r}: use one of "
                         f"{list(RESNETS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    check_backbone_args(width, last_stride)
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {sorted(POOLINGS)} "
                         "or None (the architecture's default)")
    if embedding_dim is not None and (isinstance(embedding_dim, bool)
                                      or not isinstance(embedding_dim, int) or embedding_dim < 1):
        raise ValueError(f"embedding_dim must be an integer >= 1 or None, got {embedding_dim!r}")


def build_model(num_classes: int, name: str = "baseline", backbone: str = "resnet50",
                width: float = 1.0, last_stride: int = 1, pooling: str | None = None,
                embedding_dim: int | None = None, pretrained: str | None = None,
                bnneck: bool | None = None, frozen_stride: int = 0) -> nn.Module:
    """A ReID network: in ``train()`` mode it returns a ModelOutput, in ``eval()`` the embedding.

    name: ``baseline`` (:class:`Baseline`), ``pla`` / ``pla_ce`` / ``pla_triplet`` (PLA Sec. 3.1
    and its Sec. 4.3 ablations, :class:`PLANet`) or ``mgn`` (:class:`MGN`, ResNets only).
    backbone: a name of :data:`~progreid.models.backbones.BACKBONES`.
    width: channel multiplier of the backbone (head sizes change only through embedding_dim).
    last_stride: stride of layer4; for ``mgn`` the stride of the part branches (the global
    branch always has 2).
    pooling / bnneck: None takes the architecture's own choice (:data:`PAPER_DEFAULTS`).
    embedding_dim: baseline: width of a linear reduction (None: none); PLA: width of one head
    (default: half the backbone's channels, the paper's 1024 for ResNet-50); MGN: width of
    each of the 8 reduced features (default 256).
    pretrained: a local state dict file or ``"imagenet"``, loaded into the backbone before
    MGN copies it into its branches, so every branch starts from the same weights.
    frozen_stride: the backbone's layers up to this output stride keep their weights
    (:func:`~progreid.models.freeze.freeze_early_layers`); 0 trains every layer.
    """
    check_model(num_classes, name, backbone, width, last_stride, pooling, embedding_dim)
    default_pooling, default_bnneck = PAPER_DEFAULTS[name]
    pooling = pooling or default_pooling
    bnneck = default_bnneck if bnneck is None else bnneck
    net = build_backbone(backbone, width=width, last_stride=last_stride)
    if pretrained is not None:
        load_pretrained(net, pretrained)
    freeze_early_layers(net, frozen_stride)
    if name == "baseline":
        return Baseline(net, num_classes, pooling, embedding_dim, bnneck)
    if name == "mgn":
        return MGN(net, num_classes, embedding_dim or 256, last_stride, pooling, bnneck)
    ce, triplet = PLA_HEADS[name]
    return PLANet(net, num_classes, ce, triplet, embedding_dim or net.out_channels // 2,
                  pooling, bnneck)
