"""Batch mining primitives shared by the triplet family, the quadruplet loss and the TRC loss."""

from __future__ import annotations

import torch
from torch import Tensor


def identity_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean B x B masks ``(positive, negative)`` of a batch: ``positive[a, b]``, same identity
    and ``a != b`` (an anchor is never its own positive); ``negative[a, n]``, different ones."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def kth_masked(values: Tensor, mask: Tensor, k: int, *, largest: bool) -> tuple[Tensor, Tensor]:
    """Per row, the k-th largest (or smallest) of the entries of ``values`` where ``mask`` holds.

    This is Largest^k / Smallest^p of PLA Eq. 4; k is clamped to the row's number of masked
    entries. Returns ``(selected, has_any)``: ``selected`` is 0 (with zero gradient) in rows with
    no masked entry, which ``has_any`` marks False. Differentiable in ``values``.
    """
    fill = float("-inf") if largest else float("inf")
    ordered = values.masked_fill(~mask, fill).topk(min(k, values.shape[1]), dim=1,
                                                    largest=largest).values
    count = mask.sum(dim=1)
    index = (count.clamp(max=k) - 1).clamp(min=0)
    selected = ordered.gather(1, index[:, None]).squeeze(1)
    has_any = count > 0
    return torch.where(has_any, selected, torch.zeros_like(selected)), has_any


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of ``values`` where ``mask`` holds; entries outside it (even inf/NaN) get no gradient."""
    return torch.where(mask, values, torch.zeros_like(values)).sum()


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` where ``mask`` holds; 0 (still attached to the graph) if it never does."""
    return masked_sum(values, mask) / mask.sum().clamp(min=1).to(values.dtype)
