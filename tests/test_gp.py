"""Tests for bayesnn.gp: kernels against closed forms, batched sampling, jitter, bad input."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import gp
from bayesnn.gp import (
    RBF,
    GPPrior,
    GPSampleError,
    Kernel,
    Linear,
    LogNormal,
    Matern32,
    Matern52,
    Periodic,
    cholesky_with_jitter,
    sample_kernel,
)


@pytest.fixture(scope="module")
def pts():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)


def _r(x1, x2, ls):
    return np.sqrt((((x1[:, None, :] - x2[None, :, :]) / ls) ** 2).sum(-1))


def test_kernels_match_closed_forms(pts):
    x1, x2 = pts
    ls = np.array([0.5, 1.0, 2.0], np.float32)
    r = _r(x1, x2, ls)
    cases = [
        (RBF(2.0, ls), 2.0 * np.exp(-0.5 * r**2)),
        (Matern32(1.5, ls), 1.5 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)),
        (Matern52(1.0, ls), (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)),
        (Linear(0.7, 0.2), 0.7 * x1 @ x2.T + 0.2),
    ]
    diff = x1[:, None, :] - x2[None, :, :]
    per = 1.3 * np.exp(-2 * (np.sin(np.pi * diff / 2.0) ** 2 / 0.8**2).sum(-1))
    cases.append((Periodic(1.3, 0.8, 2.0), per))
    for k, expected in cases:
        np.testing.assert_allclose(k(x1, x2), expected, rtol=2e-4, atol=2e-5)
    s = RBF(2.0, ls) + Linear(0.7, 0.2)
    p = RBF(2.0, ls) * Matern32(1.5, ls)
    np.testing.assert_allclose(s(x1, x2), cases[0][1] + cases[3][1], rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(p(x1, x2), cases[0][1] * cases[1][1], rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("offset", [100.0, 1000.0, 1.0e4])
def test_stationary_kernels_translation_invariant_in_float32(offset):
    """float32 inputs far from the origin: every stationary kernel equals its float64 closed
    form on the same (rounded) inputs, and kernel matrices stay PSD (|a|^2 + |b|^2 - 2ab gave
    RBF 0.6065 instead of 0.7066 at offset 1000 and a negative eigenvalue at offset 100)."""
    base = np.linspace(0.0, 3.0, 25)[:, None] * np.array([[1.0, -0.5]])
    x = (base + offset).astype(np.float32)
    x64 = x.astype(np.float64)
    ls = np.array([0.8, 1.5])
    r = _r(x64, x64, ls)
    diff = x64[:, None, :] - x64[None, :, :]
    cases = [
        (RBF(1.0, ls), np.exp(-0.5 * r**2)),
        (Matern32(1.0, ls), (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)),
        (Matern52(1.0, ls), (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)),
        (Periodic(1.0, 0.8, 2.0), np.exp(-2 * (np.sin(np.pi * diff / 2.0) ** 2 / 0.64).sum(-1))),
    ]
    for k, expected in cases:
        km = k(x)
        assert km.dtype == jnp.float32
        np.testing.assert_allclose(km, expected, atol=2e-5)
        ev = np.linalg.eigvalsh(np.asarray(km, np.float64))
        assert ev.min() > -1e-5 * ev.max(), (k, ev.min())


def test_kernel_matrices_are_psd(pts):
    x = np.concatenate(pts)
    for k in (RBF(), Matern32(), Matern52(), Periodic(), Linear(1.0, 0.1), RBF() * Periodic()):
        ev = np.linalg.eigvalsh(np.asarray(k(x), np.float64))
        assert ev.min() > -1e-4 * ev.max()


def test_sample_covariance_matches_kernel():
    x = jnp.linspace(-2, 2, 8)[:, None]
    g = GPPrior(RBF(1.5, 0.8), mean=0.3)
    f = np.asarray(g.sample(jax.random.key(0), x, 20000), np.float64)
    K = np.asarray(g.covariance(x))
    n = f.shape[0]
    se_cov = np.sqrt((K**2 + np.outer(np.diag(K), np.diag(K))) / n)
    assert np.all(np.abs(np.cov(f.T) - K) < 5 * se_cov + 1e-3)
    assert np.all(np.abs(f.mean(0) - 0.3) < 5 * np.sqrt(np.diag(K) / n))


def test_hyperprior_draws_are_per_function():
    # log s2 ~ N(mu, sd^2): f(x) is a scale mixture; E f^2 = exp(mu + sd^2/2) and
    # E f^4 / (3 (E f^2)^2) = exp(sd^2) (would be 1 if one draw were shared by the batch).
    mu, sd = 0.2, 0.6
    x = jnp.zeros((1, 1))
    g = GPPrior(RBF(LogNormal(mu, sd), 1.0))
    f = np.asarray(g.sample(jax.random.key(1), x, 40000), np.float64)[:, 0]
    m2, m4 = np.mean(f**2), np.mean(f**4)
    assert abs(m2 / math.exp(mu + sd**2 / 2) - 1) < 0.05
    assert abs(m4 / (3 * m2**2) / math.exp(sd**2) - 1) < 0.2
    # ARD lengthscale hyperprior: batched kernels have one lengthscale vector per draw
    ks = jax.vmap(sample_kernel, (0, None))(
        jax.random.split(jax.random.key(2), 5), RBF(1.0, LogNormal(jnp.zeros(3), 1.0))
    )
    assert ks.lengthscale.shape == (5, 3) and ks.variance.shape == (5,)


def test_hyperprior_batch_matches_single_draws():
    # Same key: the vectorised sampler equals kernels drawn one by one and sampled with
    # their own Cholesky factor.
    x = jnp.linspace(-1, 1, 5)[:, None]
    kern = RBF(LogNormal(0.0, 0.5), LogNormal(0.0, 0.5))
    g = GPPrior(kern, precision="float32")
    f, ok = g.sample_with_status(jax.random.key(3), x, 4)
    k_key, z_key = jax.random.split(jax.random.key(3))
    z = jax.random.normal(z_key, (4, 5))
    for i, kk in enumerate(jax.random.split(k_key, 4)):
        K = sample_kernel(kk, kern)(x)
        L, _, _ = cholesky_with_jitter(K)
        np.testing.assert_allclose(f[i], L @ z[i], rtol=1e-4, atol=1e-5)
    assert bool(ok)


def test_jitter_escalation_and_failure():
    x = jnp.zeros((5, 1))  # duplicated points: rank-one K, needs jitter
    L, j, ok = cholesky_with_jitter(RBF()(x).astype(jnp.float32), jitter=1e-9, max_jitter=1e-2)
    assert bool(ok) and 1e-9 < float(j) <= 1e-2
    bad = jnp.array([[1.0, 2.0], [2.0, 1.0]])
    _, _, ok = cholesky_with_jitter(bad)
    assert not bool(ok)
    batch = jnp.stack([jnp.eye(2), bad])
    _, j, ok = cholesky_with_jitter(batch)
    assert ok.tolist() == [True, False] and float(j[0]) == pytest.approx(1e-6)

    class Negative(Kernel):
        def evaluate(self, x1, x2):
            return -RBF().evaluate(x1, x2)

    Negative = jax.tree_util.register_dataclass(
        dataclasses.dataclass(frozen=True)(Negative), data_fields=[], meta_fields=[]
    )

    with pytest.raises(GPSampleError, match="not positive definite"):
        GPPrior(Negative()).sample(jax.random.key(0), jnp.ones((3, 1)), 2)


def test_bad_input():
    with pytest.raises(ValueError, match="lengthscale"):
        RBF(1.0, -1.0)
    with pytest.raises(ValueError, match="variance"):
        Matern52(float("nan"))
    with pytest.raises(ValueError, match="scale"):
        LogNormal(0.0, 0.0)
    with pytest.raises(ValueError, match="bias"):
        Linear(1.0, -0.5)
    with pytest.raises(ValueError, match="ARD"):
        RBF(1.0, jnp.ones(2))(jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        RBF()(jnp.ones(3))
    with pytest.raises(ValueError, match="hyperpriors"):
        RBF(LogNormal(0.0, 1.0))(jnp.ones((2, 1)))
    g = GPPrior(RBF())
    with pytest.raises(ValueError, match="shape"):
        g.sample(jax.random.key(0), jnp.ones(4), 2)
    with pytest.raises(ValueError, match="NaN"):
        g.sample(jax.random.key(0), jnp.full((2, 1), jnp.nan), 2)
    with pytest.raises(ValueError, match="num_samples"):
        g.sample(jax.random.key(0), jnp.ones((2, 1)), 0)
    with pytest.raises(ValueError, match="jitter"):
        GPPrior(RBF(), jitter=1.0, max_jitter=0.1)
    with pytest.raises(ValueError, match="Kernel"):
        GPPrior("rbf")


def test_public_names_have_docstrings():
    for name in gp.__all__:
        assert getattr(gp, name).__doc__, name
