"""PCA post-processing of embeddings (PLA Sec. 4.2: 2048-d -> 512-d, fitted on training data)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Projection:
    """PCA post-processing (PLA Sec. 4.2): ``(x - mean) @ components.T``."""

    mean: torch.Tensor
    components: torch.Tensor

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(features.device, features.dtype)
        return (features - mean) @ self.components.to(features.device, features.dtype).T


def fit_pca(features: torch.Tensor, dim: int) -> Projection:
    """Principal components of ``features`` (N x D) as a :class:`Projection` to ``dim`` dims.

    PLA Sec. 4.2 reduces the 2048-d embedding to 512-d with PCA fitted on the training set. The
    components are the top ``dim`` right singular vectors of the centred features, computed in
    float64 and returned in the input dtype. Signs are made deterministic: in every component the
    entry of largest magnitude (the first one on a tie) is positive. No whitening.
    """
    if features.ndim != 2:
        raise ValueError(f"fit_pca: features must be a 2-d (N x D) tensor, got shape "
                         f"{tuple(features.shape)}")
    count, width = features.shape
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"fit_pca: dim must be an integer >= 1, got {dim!r}")
    if dim > min(count, width):
        raise ValueError(f"fit_pca: eval.pca_dim = {dim} exceeds min(number of training "
                         f"features, feature dimension) = min({count}, {width})")
    if not torch.isfinite(features).all():
        raise ValueError("fit_pca: features contain NaN or infinite values")
    data = features.detach().to(torch.float64)
    mean = data.mean(dim=0)
    _, _, vh = torch.linalg.svd(data - mean, full_matrices=False)
    components = vh[:dim]
    pivots = components.abs().argmax(dim=1, keepdim=True)
    components = components * torch.sign(components.gather(1, pivots))
    return Projection(mean.to(features.dtype), components.to(features.dtype))
