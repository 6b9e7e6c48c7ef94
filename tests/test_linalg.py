"""Tests of the shared Cholesky routines (bayesnn._linalg)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn._linalg import cholesky_relative_jitter, cholesky_with_jitter, regularised_cholesky


def test_regularised_cholesky_escalates_on_singular_psd():
    """A rank-one PSD matrix with a negligible eta needs the relative-jitter fallback."""
    with jax.enable_x64(True):
        v = jnp.linspace(1.0, 2.0, 6, dtype=jnp.float64)[:, None]
        K = v @ v.T
        L = regularised_cholesky(K, 1e-300)
        assert bool(jnp.all(jnp.isfinite(L)))
        # the jitter used is at most 1e-5 mean(diag K): the factor reproduces K to that level
        err = float(jnp.max(jnp.abs(L @ L.T - K)))
        assert err <= 1e-5 * float(jnp.mean(jnp.diag(K))) * 1.01
        with pytest.raises(ValueError, match="ntk_train is not positive semi-definite"):
            regularised_cholesky(-K, 1e-6, "ntk_train")


def test_cholesky_with_jitter_reports_the_jitter_it_needed():
    """Escalation stops at the first relative jitter that factorises; a negative definite
    matrix is flagged in a batch without affecting its neighbour."""
    v = jnp.linspace(1.0, 2.0, 5)[:, None]
    scale = float(jnp.mean(v**2))
    K = v @ v.T - 5e-4 * scale * jnp.eye(5)  # smallest eigenvalue -5e-4 mean(diag)
    L, j, ok = cholesky_with_jitter(K, 1e-6, 1e-2)
    assert bool(ok) and float(j) == pytest.approx(1e-3, rel=1e-4)  # 1e-6, 1e-5, 1e-4 fail
    scale = float(jnp.mean(jnp.diag(K)))
    np.testing.assert_allclose(L @ L.T, K + float(j) * scale * jnp.eye(5), rtol=1e-4, atol=1e-5)
    _, _, oks = cholesky_with_jitter(jnp.stack([K, -K]))
    assert oks.tolist() == [True, False]


def test_cholesky_relative_jitter_symmetrises():
    """Only sym(K) is factorised: an antisymmetric perturbation leaves the factor unchanged."""
    A = jnp.asarray([[2.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 2.0]])
    S = jnp.asarray([[0.0, 0.1, -0.2], [-0.1, 0.0, 0.05], [0.2, -0.05, 0.0]])
    L = cholesky_relative_jitter(A + S, 1e-3)
    np.testing.assert_allclose(L @ L.T, A + 1e-3 * 2.0 * jnp.eye(3), rtol=1e-5)
