"""Identity-classification losses: the L_softmax term of PLA Eq. 5 and TRC Table III "Softmax"."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from progreid.losses.checks import check_finite


def cross_entropy_label_smooth(logits: Tensor, labels: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy against Szegedy et al.'s smoothed targets, averaged over the batch.

    The target of sample i is ``(1 - epsilon) * onehot(labels[i]) + epsilon / C`` for C classes;
    ``epsilon = 0`` is plain cross-entropy. ``logits``: B x C, ``labels``: B class indices.
    """
    epsilon = check_finite("epsilon", epsilon)
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon!r}")
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError("cross_entropy_label_smooth expects logits B x C and labels B, got "
                         f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels, label_smoothing=epsilon)
