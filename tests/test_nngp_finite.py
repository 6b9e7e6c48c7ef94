"""Finite BNN with an inverse-gamma readout variance vs its infinite-width scale mixture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from bayesnn import nngp
from bayesnn.nn import stax
from bayesnn.nn.kernels import kernel_fn
from bayesnn.nngp import finite


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """OpenBLAS threads spin on a loaded 2-core machine (a 500 x 500 Cholesky: 0.5 s instead
    of 0.006 s); one thread for this module's LAPACK calls, restored afterwards."""
    with threadpool_limits(1, user_api="blas"):
        yield


A, B, NOISE = 3.0, 3.0, 0.2


def _problem(width):
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 8)[:, None]
    y = np.sin(1.5 * x[:, 0]) + 0.1 * rng.normal(size=8)
    xt = np.array([[-3.0], [-1.0], [0.3], [1.7], [3.0]])
    arch = stax.serial(stax.Dense(width, 1.5, 0.5), stax.Erf(), stax.Dense(1, 1.0, None))
    with jax.enable_x64(True):
        M = np.asarray(kernel_fn(arch, jnp.asarray(np.concatenate([x, xt])), get="nngp"))
    return arch, x, y, xt, (M[:8, :8], M[8:, :8], np.diag(M)[8:])


def test_fixed_noise_mixture_limits():
    """Concentrated IG prior -> the GP with that scale; and the t-process is nearby."""
    _, _, y, _, (K, Kx, kd) = _problem(8)
    c = 1.3
    mean, sd, s2m = finite.fixed_noise_mixture_moments(K, Kx, kd, y, 1e6, c * 1e6, NOISE**2)
    g = nngp.gp.predict(nngp.gp.fit(K, y, NOISE**2 / c), Kx, kd, scale=c, include_noise=False)
    np.testing.assert_allclose(mean, g.loc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sd, g.scale, rtol=1e-4)
    assert s2m == pytest.approx(c, rel=1e-4)
    with pytest.raises(ValueError, match="noise_var"):
        finite.fixed_noise_mixture_moments(K, Kx, kd, y, 2.0, 2.0, 0.0)


def _compare(width, chains, num_samples, thinning, burnin, allowance):
    arch, x, y, xt, (K, Kx, kd) = _problem(width)
    mean, sd, _ = finite.fixed_noise_mixture_moments(K, Kx, kd, y, A, B, NOISE**2)
    mean, sd = mean[:, 0], sd[:, 0]
    model = finite.scale_mixture_bnn(arch, (1,), A, B, NOISE)
    pred = finite.sample_predictive(
        model,
        jax.random.key(0),
        x,
        y[:, None],
        xt,
        num_chains=chains,
        num_samples=num_samples,
        thinning=thinning,
        num_burnin=burnin,
        step_size=0.05,
    )
    f = np.asarray(pred.f[..., 0])  # (chains, samples, m)
    assert np.all(np.asarray(pred.sigma2) > 0) and np.std(np.asarray(pred.sigma2)) > 0
    # Monte Carlo standard errors from the spread between independent chains
    se_mean = f.mean(1).std(0, ddof=1) / np.sqrt(chains)
    se_sd = f.std(1).std(0, ddof=1) / np.sqrt(chains)
    bnn_mean, bnn_sd = f.reshape(-1, f.shape[-1]).mean(0), f.reshape(-1, f.shape[-1]).std(0)
    # tolerance: 4 MC standard errors + a finite-width allowance (O(1/width) corrections)
    assert np.all(np.abs(bnn_mean - mean) <= 4 * se_mean + allowance * sd), (bnn_mean, mean)
    assert np.all(np.abs(bnn_sd - sd) <= 4 * se_sd + allowance * sd), (bnn_sd, sd)
    # not vacuous: the tolerances are well below the predictive spread itself
    assert np.all(4 * se_sd + allowance * sd < 0.3 * sd)


def test_finite_bnn_matches_scale_mixture_small():
    """Width 128, 16 SGHMC+Gibbs chains: mean and sd of f(x*) at 5 points within tolerance.

    Observed (width 128): sd within 8%, means within 0.16 sd; width 512 halves the gap.
    """
    _compare(128, 16, 100, 30, 1000, allowance=10.0 / 128)


@pytest.mark.slow
def test_finite_bnn_matches_scale_mixture_wide():
    _compare(512, 32, 200, 60, 3000, allowance=10.0 / 512)


def test_bad_inputs():
    arch = stax.serial(stax.Dense(8, 1.5, 0.5), stax.Erf(), stax.Dense(1, 1.0, 0.1))
    with pytest.raises(ValueError, match="readout"):
        finite.scale_mixture_bnn(arch, (1,), A, B, NOISE)
    ok = stax.serial(stax.Dense(8, 1.5, 0.5), stax.Erf(), stax.Dense(1, 1.0, None))
    with pytest.raises(ValueError, match="alpha"):
        finite.scale_mixture_bnn(ok, (1,), -1.0, B, NOISE)
    with pytest.raises(ValueError, match="noise_std"):
        finite.scale_mixture_bnn(ok, (1,), A, B, 0.0)
