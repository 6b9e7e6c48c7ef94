"""Automatic step sizes: local scales against closed forms, predicted bias against simulation.

The model is Bayesian linear regression with a Gaussian prior, whose posterior is Gaussian:
the Hessian of ``-log p`` is ``I/s0² + XᵀX/σ²`` everywhere, and the per-example gradients
``-w/s0² + N x_i (y_i - x_iᵀ w)/σ²`` give the minibatch-noise covariance in closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

from samplers import sgmcmc
from samplers.sgmcmc import step_size as ss

N, S0, SIG = 200, 1.0, 0.5


def _regression(d, key=0):
    kx, kw, ke = jax.random.split(jax.random.key(key), 3)
    scale = jnp.asarray([[1.0, 2.0, 0.5][:d]])
    x = jax.random.normal(kx, (N, d)) * scale
    y = x @ jax.random.normal(kw, (d,)) + SIG * jax.random.normal(ke, (N,))
    return x, y


def logdensity(w, batch, data_size):
    x, y = batch
    return -0.5 * jnp.sum(w**2) / S0**2 - 0.5 * data_size * jnp.mean((y - x @ w) ** 2) / SIG**2


def _exact(x, y, w, batch_size, fpc=True):
    x, y, w = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(w, np.float64)
    hess = np.eye(x.shape[1]) / S0**2 + x.T @ x / SIG**2
    grads = -w[None] / S0**2 + N * x * (y - x @ w)[:, None] / SIG**2
    cov = np.cov(grads.T).reshape(x.shape[1], x.shape[1]) / batch_size
    if fpc:
        cov *= (N - batch_size) / (N - 1)
    return hess, cov, grads


@pytest.fixture(scope="module")
def data3():
    return _regression(3)


def test_local_scales_match_closed_form(data3):
    x, y = data3
    positions = jnp.stack([jnp.zeros(3), jnp.ones(3)])
    scales = ss.estimate_local_scales(
        jax.random.key(1), logdensity, (x, y), positions, batch_size=10, num_examples=N
    )
    pre = ss.estimate_local_scales(
        jax.random.key(1),
        logdensity,
        (x, y),
        positions,
        batch_size=10,
        num_examples=N,
        preconditioned=True,
        epsilon=1e-5,
    )
    for c, w in enumerate(np.asarray(positions)):
        hess, cov, grads = _exact(x, y, w, 10)
        np.testing.assert_allclose(scales.curvature[c], np.linalg.eigvalsh(hess)[-1], rtol=1e-3)
        np.testing.assert_allclose(scales.noise[c, 0], np.linalg.eigvalsh(cov)[-1], rtol=1e-3)
        p = 1.0 / (1e-5 + np.sqrt(grads.mean(0) ** 2 + np.diag(cov)))
        sp = np.sqrt(p)
        np.testing.assert_allclose(
            pre.curvature[c], np.linalg.eigvalsh(sp[:, None] * hess * sp[None])[-1], rtol=1e-3
        )
        np.testing.assert_allclose(
            pre.noise[c, 0], np.linalg.eigvalsh(sp[:, None] * cov * sp[None])[-1], rtol=1e-3
        )
        np.testing.assert_allclose(pre.precond[c, 1], p.min(), rtol=1e-4)


def test_sgld_ratio_is_the_closed_form():
    rule = ss.rule_for(sgmcmc.sgld())
    h = np.logspace(-4, np.log10(1.9), 30)
    lam, v = 1.0, 50.0
    expected = (1 + h * v / 2) / (1 - h * lam / 2)
    np.testing.assert_allclose(ss.stationary_variance_ratio(rule, h, lam, v), expected, rtol=1e-8)
    # unstable beyond h λ = 2
    assert np.isinf(ss.stationary_variance_ratio(rule, np.array([2.05]), lam, v)).all()


def test_sghmc_noise_term_is_chen_et_al():
    """Small h: r - 1 -> h v / (2 α) (B̂/α); without noise r -> 1."""
    alpha = 0.5
    rule = ss.rule_for(sgmcmc.sghmc(alpha=alpha))
    h = np.array([1e-4, 1e-3])
    lam, v = 1.0, 100.0
    r = ss.stationary_variance_ratio(rule, h, lam, v)
    np.testing.assert_allclose(r - 1.0, h * v / (2 * alpha), rtol=0.02)
    np.testing.assert_allclose(ss.stationary_variance_ratio(rule, h, lam, 0.0), 1.0, atol=1e-3)


def test_hyperparameters_are_read_from_the_kernel():
    small = ss.rule_for(sgmcmc.sghmc(alpha=0.1))
    large = ss.rule_for(sgmcmc.sghmc(alpha=1.0))
    h = np.array([1e-3])
    assert ss.stationary_variance_ratio(small, h, 1.0, 100.0) > ss.stationary_variance_ratio(
        large, h, 1.0, 100.0
    )


# kernel, tolerance: the predicted variance ratio at the chosen step size against the one
# measured by running the kernel from the exact posterior
SIM = [
    ("sgld", sgmcmc.sgld(), 0.3),
    # friction near critical damping 2 sqrt(λ) ≈ 56: with a small friction the tiny step the
    # noise condition allows leaves the momentum unmixed for ~1/(αh) steps
    ("sghmc", sgmcmc.sghmc(alpha=50.0), 0.3),
    ("adaptive_sghmc", sgmcmc.adaptive_sghmc(mdecay=0.05), 0.3),
]


@pytest.mark.parametrize("name,kernel,tolerance", SIM, ids=[s[0] for s in SIM])
def test_predicted_variance_bias_matches_simulation(name, kernel, tolerance):
    """One-dimensional regression: the posterior is N(m, 1/λ) and the gradient noise nearly
    constant over it, so the kernel's stationary variance is the predicted ``r(h)/λ`` up to
    Monte Carlo error: |measured/predicted - 1| within 4 standard errors ``sqrt(2/ESS)``
    (plus 3% for the noise varying over the posterior)."""
    x, y = _regression(1, key=3)
    hess, _, _ = _exact(x, y, np.zeros(1), 10)
    lam = float(hess[0, 0])
    mean = float(np.asarray(x[:, 0] @ y) / SIG**2 / lam)
    chains = 8
    init = jnp.full((chains, 1), mean)
    info = ss.choose_step_size(
        jax.random.key(0),
        kernel,
        logdensity,
        (x, y),
        init[:1],
        batch_size=10,
        batches="replace",
        tolerance=tolerance,
        num_examples=N,
    )
    predicted = float(info.variance_ratio[0])
    assert abs(predicted - 1.0) <= tolerance
    res = sgmcmc.sample(
        jax.random.key(1),
        kernel,
        logdensity,
        (x, y),
        init,
        num_samples=1500,
        batch_size=10,
        step_size=info.step_size,
        num_burnin=1000,
        thinning=5,
        batches="replace",
        progress_bar=False,
    )
    draws = np.asarray(res.positions, np.float64)[..., 0]
    ess = float(effective_sample_size(draws[..., None])[0])
    measured = draws.var() * lam
    se = np.sqrt(2.0 / ess)
    assert abs(measured / predicted - 1.0) < 4 * se + 0.03, (name, measured, predicted, ess)
    if predicted > 1.0 + tolerance / 2:  # a bias large enough to be seen: check it is
        assert measured - 1.0 > 2 * se, (name, measured, predicted, ess)


def test_tune_moves_chains_and_grows_the_step(data3):
    x, y = data3
    start = jnp.full((2, 3), 5.0)
    positions, info = ss.tune_step_size(
        jax.random.key(0),
        sgmcmc.sgld(),
        logdensity,
        (x, y),
        start,
        batch_size=20,
        num_steps=800,
        num_rounds=3,
    )
    assert len(info.history) == 3 + 2  # stability rounds, then rounds at the accuracy step
    # the refinements never step above the last stability round, and the result is what the
    # accuracy rule allows at the positions returned (or the step the last round ran at)
    assert info.history[3] <= info.history[2]
    assert info.step_size <= info.history[-1]
    again = ss.choose_step_size(
        jax.random.key(7), sgmcmc.sgld(), logdensity, (x, y), positions, batch_size=20
    )
    assert info.step_size <= 1.5 * again.step_size
    hess, _, _ = _exact(x, y, np.zeros(3), 20)
    w_map = np.linalg.solve(hess, np.asarray(x.T @ y) / SIG**2)
    # the posterior sd is below 0.02 in every direction; the start was 5 away
    assert np.abs(np.asarray(positions) - w_map).max() < 0.2
    far = ss.choose_step_size(
        jax.random.key(0), sgmcmc.sgld(), logdensity, (x, y), start, batch_size=20
    )
    assert info.step_size > 10 * far.step_size  # less gradient noise near the posterior


def test_bad_input(data3):
    x, y = data3
    pos = jnp.zeros((1, 3))
    with pytest.raises(ValueError, match="tolerance"):
        ss.choose_step_size(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            (x, y),
            pos,
            batch_size=10,
            tolerance=1.5,
        )
    with pytest.raises(ValueError, match="batch_size"):
        ss.estimate_local_scales(jax.random.key(0), logdensity, (x, y), pos, batch_size=N + 1)
    unknown = sgmcmc.SGMCMCKernel(lambda p: p, lambda *a: a[1], "mystery")
    with pytest.raises(ValueError, match="mystery"):
        ss.rule_for(unknown)
    with pytest.raises(ValueError, match="batches"):
        ss.estimate_local_scales(
            jax.random.key(0), logdensity, (x, y), pos, batch_size=10, batches="nope"
        )
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="num_refinements"):
            ss.tune_step_size(
                jax.random.key(0), sgmcmc.sgld(), logdensity, (x, y), pos, batch_size=10,
                num_steps=100, num_refinements=bad,
            )  # fmt: skip


def test_sample_without_step_size_uses_and_reports_the_engines(data3):
    x, y = data3
    res = sgmcmc.sample(
        jax.random.key(0),
        sgmcmc.sgld(),
        logdensity,
        (x, y),
        jnp.zeros((2, 3)),
        num_samples=20,
        batch_size=20,
        num_burnin=400,
        progress_bar=False,
    )
    info = res.step_size_info
    assert info is not None and info.variance_ratio.max() <= 1.1 + 1e-9
    np.testing.assert_allclose(np.asarray(res.info.step_size), info.step_size, rtol=1e-6)
    with pytest.raises(ValueError, match="num_burnin >= 24"):
        sgmcmc.sample(
            jax.random.key(0),
            sgmcmc.sgld(),
            logdensity,
            (x, y),
            jnp.zeros((2, 3)),
            num_samples=5,
            batch_size=20,
            num_burnin=0,
            progress_bar=False,
        )
