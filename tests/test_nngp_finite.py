"""Finite BNN with an inverse-gamma readout variance vs its infinite-width scale mixture
(Dense and convolutional architectures)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
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
    # float64 kernels outside jax.enable_x64 keep their precision (no float32 truncation).
    with jax.enable_x64(True):
        want = finite.fixed_noise_mixture_moments(K, Kx, kd, y, A, B, NOISE**2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = finite.fixed_noise_mixture_moments(K, Kx, kd, y, A, B, NOISE**2)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _compare(problem, chains, num_samples, thinning, burnin, allowance):
    arch, x, y, xt, (K, Kx, kd) = problem
    mean, sd, _ = finite.fixed_noise_mixture_moments(K, Kx, kd, y, A, B, NOISE**2)
    mean, sd = mean[:, 0], sd[:, 0]
    model = finite.scale_mixture_bnn(arch, x.shape[1:], A, B, NOISE)
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
    _compare(_problem(128), 16, 100, 30, 1000, allowance=10.0 / 128)


@pytest.mark.slow
def test_finite_bnn_matches_scale_mixture_wide():
    _compare(_problem(512), 32, 200, 60, 3000, allowance=10.0 / 512)


# ---------------------------------------------------------------------------------------------
# Convolutional architectures: kernel from bayesnn.nn.kernels.kernel_fn on NHWC images


def _conv_arch(width, readout):
    return stax.serial(
        stax.Conv(width, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
        stax.Relu(),
        readout,
        stax.Dense(1, 1.0, None),
    )


def _nngp64(arch, images):
    with jax.enable_x64(True):
        return np.asarray(kernel_fn(arch, jnp.asarray(images, jnp.float64), get="nngp"))


def _conv_problem(width):
    """8 training and 5 test 6x6x1 noise images; a smooth target of their pixel means."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 6, 6, 1))
    y = np.tanh(3.0 * x[:8].mean((1, 2, 3)) + x[:8, 2:4, 2:4, 0].mean((1, 2)))
    y = y + 0.1 * rng.normal(size=8)
    # GlobalAvgPool readout: the Gibbs step for sigma^2 | W mixes at a rate set by the number
    # of readout weights (width), as in the Dense test; a Flatten readout has H*W*width of
    # them and its sigma^2 barely moves in a test-sized run.
    arch = _conv_arch(width, stax.GlobalAvgPool())
    M = _nngp64(arch, x)
    return arch, x[:8], y, x[8:], (M[:8, :8], M[8:, :8], np.diag(M)[8:])


def test_finite_cnn_prior_is_the_t_process():
    """Prior predictive of a finite CNN (Conv 3x3 SAME, ReLU, Flatten, Dense readout with
    ``sigma^2 ~ IG(a, b)``) against the t-process of the same architecture at 6 images.

    * Second moments: ``E[f f^T] = E[sigma^2] Kbar = b / (a - 1) Kbar`` holds exactly at any
      width for one hidden conv layer (channels are i.i.d., so the empirical kernel averages
      to the NNGP kernel), so the finite-width allowance is zero and the tolerance is 4 Monte
      Carlo standard errors of each entry.
    * Shape: ``f(x) / sqrt(Kbar(x, x) b / a)`` is Student-t with ``2a`` degrees of freedom;
      the Kolmogorov-Smirnov distance to it stays below the 0.1% critical value
      ``1.95 / sqrt(draws)`` plus a finite-width allowance (the empirical kernel's relative
      variance, ``Var(relu(z)^2) / E[relu(z)^2]^2 / (width H W) = 5 / (width H W)``), while
      the Gaussian of the same variance is rejected.
    """
    width, draws = 16, 16000
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 6, 6, 1))
    arch = _conv_arch(width, stax.Flatten())
    K = _nngp64(arch, x)
    model = finite.scale_mixture_bnn(arch, (6, 6, 1), A, B, NOISE)

    def prior_output(key):
        kv, kp = jax.random.split(key)
        net = model.prior.sample(kp, model.prior.sample_variances(kv))
        return model.predict({"net": net, "likelihood": {}}, x)[:, 0]

    keys = jax.random.split(jax.random.key(3), draws)
    f = np.asarray(jax.jit(jax.vmap(prior_output))(keys), np.float64)  # (draws, 6)
    prod = f[:, :, None] * f[:, None, :]
    se = prod.std(0, ddof=1) / np.sqrt(draws)
    target = B / (A - 1) * K
    assert np.all(np.abs(prod.mean(0) - target) <= 4 * se), (prod.mean(0) - target) / se
    assert np.all(4 * np.diag(se) < 0.15 * np.diag(target))  # not vacuous

    u = f / np.sqrt(np.diag(K) * B / A)
    crit = 1.95 / np.sqrt(draws)
    allowance = 5.0 / (width * 6 * 6)
    student = stats.t(2 * A)
    gauss = stats.norm(scale=student.std())
    for i in range(u.shape[1]):
        assert stats.kstest(u[:, i], student.cdf).statistic < crit + allowance
        assert stats.kstest(u[:, i], gauss.cdf).statistic > crit + allowance


@pytest.mark.slow
def test_finite_cnn_matches_t_process():
    """Conv(128, 3x3, SAME) + ReLU + GlobalAvgPool + Dense readout, 16 SGHMC+Gibbs chains:
    posterior predictive mean and sd of ``f(x*)`` at 5 test images within the Dense test's
    tolerance (4 MC standard errors + ``10 / width`` of the sd).

    Observed: sd within 10%, means within 0.13 sd (50-100 s on a loaded 2-core machine).
    """
    _compare(_conv_problem(128), 16, 100, 30, 1000, allowance=10.0 / 128)


def test_bad_inputs():
    arch = stax.serial(stax.Dense(8, 1.5, 0.5), stax.Erf(), stax.Dense(1, 1.0, 0.1))
    with pytest.raises(ValueError, match="readout"):
        finite.scale_mixture_bnn(arch, (1,), A, B, NOISE)
    ok = stax.serial(stax.Dense(8, 1.5, 0.5), stax.Erf(), stax.Dense(1, 1.0, None))
    with pytest.raises(ValueError, match="alpha"):
        finite.scale_mixture_bnn(ok, (1,), -1.0, B, NOISE)
    with pytest.raises(ValueError, match="noise_std"):
        finite.scale_mixture_bnn(ok, (1,), A, B, 0.0)
    conv = finite.scale_mixture_bnn(_conv_arch(4, stax.Flatten()), (6, 6, 1), A, B, NOISE)
    with pytest.raises(ValueError, match="example shape"):
        finite.sample_predictive(conv, jax.random.key(0), np.zeros((3, 6, 6)), np.zeros(3), None)
    with pytest.raises(ValueError, match="x_test"):
        finite.sample_predictive(
            conv, jax.random.key(0), np.zeros((3, 6, 6, 1)), np.zeros(3), np.zeros((2, 5, 5, 1))
        )
    with pytest.raises(ValueError, match="y must have a last axis"):
        finite.sample_predictive(
            conv,
            jax.random.key(0),
            np.zeros((3, 6, 6, 1)),
            np.zeros((3, 2)),
            np.zeros((2, 6, 6, 1)),
        )
