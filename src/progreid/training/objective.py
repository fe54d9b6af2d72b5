"""The training objective: PLA Eq. 5 over the model's heads, with typed loss terms.

``L = ce_weight * L_softmax + lambda * L_metric``: with a single classifier and a single metric
feature this is PLA Eq. 5; with several (MGN), each part is the mean over its heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from progreid.config import LossConfig
from progreid.losses import BatchHard, CrossEntropy, MetricTerm, composite_loss, metric_term
from progreid.models import ModelOutput


@dataclass(frozen=True)
class Objective:
    """The loss of one training stretch (PLA's plan changes ``lam`` and the metric term's
    k, p and margin between rounds; TRC's the phase)."""

    metric: MetricTerm | None = field(default_factory=BatchHard)
    lam: float = 1.0
    ce_weight: float = 1.0
    ce: CrossEntropy = field(default_factory=CrossEntropy)

    @classmethod
    def from_config(cls, cfg: LossConfig) -> Objective:
        metric = None if cfg.metric is None else metric_term(cfg.metric, cfg.metric_params)
        return cls(metric, cfg.metric_weight, cfg.ce_weight, CrossEntropy(cfg.label_smoothing))

    def with_metric(self, lam: float | None = None, **params: Any) -> Objective:
        """A copy with some parameters of the metric term (and optionally lambda) replaced."""
        return dataclasses.replace(self, lam=self.lam if lam is None else lam,
                                   metric=dataclasses.replace(self.metric, **params))

    def __call__(self, output: ModelOutput, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its detached terms (``ce``, ``metric``, ``acc``)."""
        terms: dict[str, Tensor] = {}
        ce = output.embedding.new_zeros(())
        if output.logits and self.ce_weight > 0:
            ce = torch.stack([self.ce(logits.float(), labels) for logits in output.logits]).mean()
            terms["ce"] = ce.detach()
            terms["acc"] = (output.logits[0].argmax(1) == labels).float().mean()
        metric = output.embedding.new_zeros(())
        if output.metric_features and self.metric is not None and self.lam > 0:
            metric = torch.stack([self.metric(feats.float(), labels)
                                  for feats in output.metric_features]).mean()
            terms["metric"] = metric.detach()
        total = composite_loss(self.ce_weight * ce, metric, self.lam)
        terms["loss"] = total.detach()
        return total, terms
