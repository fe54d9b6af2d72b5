"""PCA post-processing (PLA Sec. 4.2) against a straightforward numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from progreid.evaluation.pca import fit_pca


def numpy_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: eigenvectors of the covariance, largest eigenvalues first, largest-magnitude
    entry of each made positive."""
    mean = x.mean(axis=0)
    centred = x - mean
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigvals)[::-1][:dim]
    components = eigvecs[:, order].T
    for row in components:
        row *= np.sign(row[np.argmax(np.abs(row))])
    return mean, components


def test_matches_numpy_reference():
    rng = np.random.default_rng(0)
    scales = np.array([9.0, 7.0, 5.0, 3.0, 2.0, 1.0, 0.5, 0.25])
    x = rng.normal(size=(200, 8)) * scales + rng.normal(size=8)
    projection = fit_pca(torch.from_numpy(x), 5)
    mean, components = numpy_pca(x, 5)
    np.testing.assert_allclose(projection.mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(projection.components.numpy(), components, atol=1e-8)
    projected = projection(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(projected, (x - mean) @ components.T, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 40), st.integers(2, 12), st.data())
def test_properties(count, width, data):
    dim = data.draw(st.integers(1, min(count, width)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(count, width))).float()
    projection = fit_pca(x, dim)
    assert projection.components.shape == (dim, width)
    assert projection.components.dtype == torch.float32
    gram = projection.components.double() @ projection.components.double().T
    torch.testing.assert_close(gram, torch.eye(dim, dtype=torch.float64), atol=1e-5, rtol=0)
    pivots = projection.components.abs().argmax(dim=1)
    assert (projection.components.gather(1, pivots[:, None]) > 0).all()
    projected = projection(x).double()
    torch.testing.assert_close(projected.mean(0), torch.zeros(dim, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    variances = projected.var(0)
    assert (variances[:-1] >= variances[1:] - 1e-4).all()


def test_deterministic_under_sign_flip_of_data():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a, b = fit_pca(x, 4), fit_pca(-x, 4)
    torch.testing.assert_close(a.components, b.components)


@pytest.mark.parametrize(("shape", "dim", "match"), [
    ((10, 4), 5, "exceeds"), ((3, 8), 4, "exceeds"), ((10,), 1, "2-d"), ((10, 4), 0, ">= 1")])
def test_bad_input(shape, dim, match):
    with pytest.raises(ValueError, match=match):
        fit_pca(torch.randn(*shape), dim)


def test_rejects_nan():
    x = torch.randn(10, 4)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_pca(x, 2)
