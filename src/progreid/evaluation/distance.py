"""Pairwise distances between feature sets, query rows against a gallery whose norms are cached."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

Metric = Literal["euclidean", "cosine"]
METRICS: tuple[str, ...] = ("euclidean", "cosine")
_EPS = 1e-12  # as torch.nn.functional.normalize: a zero vector stays zero


def as_tensor(array, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """A torch view of ``array`` (numpy array, tensor or sequence), copied only when needed."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(array))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a numpy array or torch tensor, got "
                            f"{type(array).__name__}") from exc
    return tensor if device is None else tensor.to(device)


def as_ids(values, name: str, length: int, device: torch.device | None = None) -> torch.Tensor:
    """``values`` as a length-``length`` int64 tensor of identities or cameras."""
    ids = as_tensor(values, name, device)
    if ids.shape != (length,):
        raise ValueError(f"{name} has shape {tuple(ids.shape)}; expected ({length},)")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers, got dtype {ids.dtype}")
    return ids.long()


def as_matrix(array, name: str, what: str, device: torch.device | None = None) -> torch.Tensor:
    """``array`` as a 2-D tensor of real numbers; ``what`` names its rows and columns."""
    matrix = as_tensor(array, name, device)
    if matrix.dim() != 2:
        raise ValueError(f"{name} must be 2-D ({what}), got shape {tuple(matrix.shape)}")
    if matrix.dtype == torch.bool or matrix.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {matrix.dtype}")
    return matrix


def as_features(array, name: str) -> torch.Tensor:
    """``array`` as a 2-D float32 tensor of finite values (on its own device)."""
    features = as_matrix(array, name, "images x dimensions").float()
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return features


class GalleryDistance:
    """Distances from query features to a fixed gallery (float32, on the gallery's device):
    ``euclidean`` is the plain (not squared) sqrt(max(|q|^2 - 2 q.g + |g|^2, 0)), ``cosine``
    1 - q.g / (|q| |g|). The gallery norms are computed once, so a loop over query chunks costs
    one matrix product per chunk and never copies the gallery."""

    def __init__(self, gallery, metric: Metric = "euclidean", name: str = "gallery_features"):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.gallery = as_features(gallery, name)
        self._gallery_term = (self.gallery.pow(2).sum(1) if metric == "euclidean"
                              else self.gallery.norm(dim=1).clamp_min(_EPS).reciprocal())

    @property
    def size(self) -> int:
        return self.gallery.shape[0]

    @property
    def device(self) -> torch.device:
        return self.gallery.device

    def __call__(self, query: torch.Tensor) -> torch.Tensor:
        """The (len(query), gallery size) distance block; ``query`` as from :func:`as_features`."""
        if self.metric == "euclidean":
            return self.squared(query).sqrt_()
        self._check(query)
        query = query / query.norm(dim=1, keepdim=True).clamp_min(_EPS)
        sim = torch.mm(query, self.gallery.T).mul_(self._gallery_term[None, :])
        return sim.neg_().add_(1.0)

    def squared(self, query: torch.Tensor) -> torch.Tensor:
        """Squared Euclidean distances max(|q|^2 - 2 q.g + |g|^2, 0) of a query block."""
        if self.metric != "euclidean":
            raise ValueError("squared distances are defined for the euclidean metric only")
        self._check(query)
        dist = torch.addmm(self._gallery_term[None, :], query, self.gallery.T, alpha=-2.0)
        return dist.add_(query.pow(2).sum(1, keepdim=True)).clamp_(min=0.0)

    def pairs(self, query: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Distance between each ``query[k]`` and ``gallery[index[k]]``, same formula."""
        self._check(query)
        gallery = self.gallery[index]
        term = self._gallery_term[index]
        if self.metric == "euclidean":
            dot = (query * gallery).sum(1)
            return (term - 2.0 * dot).add_(query.pow(2).sum(1)).clamp_(min=0.0).sqrt_()
        query = query / query.norm(dim=1, keepdim=True).clamp_min(_EPS)
        return 1.0 - (query * gallery).sum(1) * term

    def _check(self, query: torch.Tensor) -> None:
        if query.dim() != 2 or query.shape[1] != self.gallery.shape[1]:
            raise ValueError(f"query features of shape {tuple(query.shape)} do not match "
                             f"gallery features of dimension {self.gallery.shape[1]}")
        if query.device != self.device:
            raise ValueError(f"query features are on {query.device} but gallery features on "
                             f"{self.device}")


def pairwise_distance(query, gallery, metric: Metric = "euclidean") -> torch.Tensor:
    """Q x G distances between two feature sets (numpy or torch), float32 torch tensor."""
    return GalleryDistance(gallery, metric)(as_features(query, "query_features"))
