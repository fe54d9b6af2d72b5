"""What a progreid network returns in training mode."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelOutput:
    """Training-mode output of every progreid model (in eval mode a model returns ``embedding``).

    ``logits``: one ``B x num_classes`` tensor per classifier (cross-entropy terms).
    ``metric_features``: one ``B x D`` tensor per metric-loss term (triplet, TRC, ...).
    ``embedding``: the ``B x E`` test embedding.
    """

    logits: list[Tensor]
    metric_features: list[Tensor]
    embedding: Tensor
