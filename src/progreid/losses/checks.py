"""Input checks shared by the losses: a bad batch or parameter fails with a message naming it."""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

_INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def check_batch(embeddings: Tensor, labels: Tensor) -> None:
    """Require a non-empty B x D floating ``embeddings`` and a length-B integer ``labels``."""
    if embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError("embeddings must be a 2-D floating tensor (B x D), got "
                         f"shape {tuple(embeddings.shape)} and dtype {embeddings.dtype}")
    if labels.dim() != 1 or labels.dtype not in _INTEGER_DTYPES:
        raise ValueError("labels must be a 1-D integer tensor, got "
                         f"shape {tuple(labels.shape)} and dtype {labels.dtype}")
    if embeddings.shape[0] == 0 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"embeddings and labels must hold the same non-zero number of samples, "
                         f"got {embeddings.shape[0]} embeddings and {labels.shape[0]} labels")
    if labels.device != embeddings.device:
        raise ValueError(f"labels are on {labels.device} but embeddings on {embeddings.device}")


def check_int_at_least(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_finite(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
