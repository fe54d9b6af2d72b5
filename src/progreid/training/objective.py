"""The training objective: cross-entropy on every classifier plus a weighted metric loss.

With a single classifier and a single metric feature this is PLA Eq. 5,
``L = L_softmax + lambda * L_metric``; with several (MGN), each part is the mean over its heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from progreid.config import LossConfig
from progreid.losses import composite_loss, cross_entropy_label_smooth, metric_loss
from progreid.models import ModelOutput


@dataclass(frozen=True)
class Objective:
    """Loss hyper-parameters of one training stretch (PLA's driver changes them between rounds)."""

    ce_weight: float = 1.0
    label_smoothing: float = 0.1
    metric: str | None = "batch_hard"
    metric_weight: float = 1.0
    metric_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: LossConfig) -> Objective:
        return cls(cfg.ce_weight, cfg.label_smoothing, cfg.metric, cfg.metric_weight,
                   dict(cfg.metric_params))

    def with_metric_params(self, metric_weight: float | None = None, **params: Any) -> Objective:
        """A copy with some metric parameters (and optionally the weight) replaced."""
        weight = self.metric_weight if metric_weight is None else metric_weight
        return dataclasses.replace(self, metric_weight=weight,
                                   metric_params={**self.metric_params, **params})

    def validate(self) -> None:
        """Raise a clear ValueError now for an unknown metric or parameter, not mid-training."""
        if self.metric is None:
            return
        embeddings = torch.randn(8, 4)
        labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        metric_loss(self.metric, embeddings, labels, **self.metric_params)

    def __call__(self, output: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its detached terms (``ce``, ``metric``, ``acc``)."""
        terms: dict[str, Tensor] = {}
        ce = output.embedding.new_zeros(())
        if output.logits and self.ce_weight > 0:
            ce = torch.stack([cross_entropy_label_smooth(logits.float(), labels,
                                                         self.label_smoothing)
                              for logits in output.logits]).mean()
            terms["ce"] = ce.detach()
            terms["acc"] = (output.logits[0].argmax(1) == labels).float().mean()
        metric = output.embedding.new_zeros(())
        if output.metric_features and self.metric is not None and self.metric_weight > 0:
            metric = torch.stack([metric_loss(self.metric, feats.float(), labels,
                                              **self.metric_params)
                                  for feats in output.metric_features]).mean()
            terms["metric"] = metric.detach()
        total = composite_loss(self.ce_weight * ce, metric, self.metric_weight)
        terms["loss"] = total.detach()
        return total, terms
