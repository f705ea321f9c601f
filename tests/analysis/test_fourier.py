"""Fourier analysis (analysis/fourier.py): the basis and the energy per frequency."""

from __future__ import annotations

import numpy as np
import pytest

from interp_pipeline.analysis.fourier import fourier_basis, frequency_energy


@pytest.mark.parametrize("p", [3, 13, 113])
def test_basis_is_orthonormal(p: int) -> None:
    basis = fourier_basis(p)
    assert basis.shape == (p, p)
    np.testing.assert_allclose(basis @ basis.T, np.eye(p), atol=1e-10)


def test_energy_is_total_energy_less_the_constant() -> None:
    embedding = np.random.default_rng(0).normal(size=(13, 8))
    energy = frequency_energy(embedding, 13)
    assert energy.shape == (6,)
    centred = embedding - embedding.mean(axis=0)
    assert energy.sum() == pytest.approx((centred**2).sum())
