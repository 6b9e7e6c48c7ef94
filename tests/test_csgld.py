"""Contour SGLD: multi-modal sampling with importance reweighting.

Target: the 1-D mixture ``0.25 N(-4, 1) + 0.75 N(4, 1)``; every chain starts in the light
mode at ``-4``. The barrier seen from the light mode is ~6.6 nats, so in the same number of
steps plain SGLD mostly stays where it started. The Monte Carlo standard error of a
reweighted estimate is the spread of the per-chain estimates over ``sqrt(num_chains)``
(independent chains).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import sgmcmc
from samplers.sgmcmc.csgld import energy_index, importance_weights, weighted_expectation

A, W_RIGHT = 4.0, 0.75
C = 32
Z = 4.0
GAP, U_MIN, M, ZETA = 0.5, 1.0, 40, 0.75
RUN = dict(num_samples=2000, batch_size=1, step_size=0.05, num_burnin=10000, thinning=10)


def logdensity(x, batch, data_size):
    left = jnp.log(1.0 - W_RIGHT) - 0.5 * (x + A) ** 2
    right = jnp.log(W_RIGHT) - 0.5 * (x - A) ** 2
    return jnp.logaddexp(left, right) - 0.5 * jnp.log(2 * jnp.pi)


def _run(kernel):
    return sgmcmc.sample(
        jax.random.key(1),
        kernel,
        logdensity,
        jnp.zeros((1,)),
        jnp.full((C,), -A),
        progress_bar=False,
        shard=False,
        **RUN,
    )


@pytest.fixture(scope="module")
def csgld_run():
    return _run(sgmcmc.csgld(M, GAP, U_MIN, ZETA))


def _estimate(values, weights):
    est, per_chain = weighted_expectation(values, weights)
    return float(est), float(np.std(np.asarray(per_chain), ddof=1) / np.sqrt(C))


def test_csgld_recovers_mixture_where_sgld_is_stuck(csgld_run):
    x = csgld_run.positions
    pdf = csgld_run.state.kernel_state.energy_pdf
    assert pdf.shape == (C, M)
    np.testing.assert_allclose(np.asarray(pdf).sum(-1), 1.0, atol=1e-4)
    assert np.all(np.asarray(pdf) >= 0)
    logp = jax.vmap(jax.vmap(lambda v: logdensity(v, None, 1)))(x)
    w = importance_weights(logp, pdf, energy_gap=GAP, min_energy=U_MIN, zeta=ZETA)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-4)
    p_right, se_p = _estimate((x > 0).astype(jnp.float32), w)
    mean, se_mean = _estimate(x, w)
    assert se_p < 0.06 and se_mean < 0.5, (se_p, se_mean)  # the check has power
    assert abs(p_right - W_RIGHT) < Z * se_p, (p_right, se_p)
    assert abs(mean - (2 * W_RIGHT - 1) * A) < Z * se_mean, (mean, se_mean)
    # Without reweighting the flattened chain is not the posterior.
    assert abs(float((x > 0).mean()) - W_RIGHT) > Z * se_p

    sgld = _run(sgmcmc.sgld()).positions
    uniform = jnp.full(sgld.shape, 1.0 / sgld.shape[1])
    p_sgld, _ = _estimate((sgld > 0).astype(jnp.float32), uniform)
    # SGLD: stuck near the start, its estimate is many CSGLD standard errors off.
    assert abs(p_sgld - W_RIGHT) > 0.25, p_sgld


def test_zeta_zero_is_sgld():
    kwargs = dict(num_samples=50, batch_size=1, step_size=0.05, progress_bar=False, shard=False)
    init = jnp.full((4,), -A)
    a = sgmcmc.sample(
        jax.random.key(3),
        sgmcmc.csgld(M, GAP, U_MIN, zeta=0.0),
        logdensity,
        jnp.zeros((1,)),
        init,
        **kwargs,
    )
    b = sgmcmc.sample(
        jax.random.key(3), sgmcmc.sgld(), logdensity, jnp.zeros((1,)), init, **kwargs
    )
    np.testing.assert_allclose(a.positions, b.positions, rtol=1e-6, atol=1e-6)


def test_weights_interpolate_the_energy_pdf():
    pdf = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(8)), jnp.float32)
    edges = U_MIN + GAP * jnp.arange(1, 7)  # upper edges of partitions 1..6
    logd = -jnp.stack([edges - 1e-4, edges + 1e-4], -1).reshape(-1)
    logw = importance_weights(
        logd, pdf, energy_gap=GAP, min_energy=U_MIN, zeta=1.0, normalize=False
    )
    # Continuous at the edges, equal to log θ(i) at the upper edge of partition i.
    np.testing.assert_allclose(logw[0::2], logw[1::2], atol=2e-3)
    np.testing.assert_allclose(logw[2::2], jnp.log(pdf[2:7]), atol=2e-3)
    # Partition 1 is flat at θ(1); the piecewise-constant variant uses θ(J).
    np.testing.assert_allclose(logw[0], jnp.log(pdf[1]), atol=1e-5)
    flat = importance_weights(
        logd, pdf, energy_gap=GAP, min_energy=U_MIN, zeta=0.5, interpolate=False, normalize=False
    )
    idx = energy_index(logd, 8, GAP, U_MIN)
    np.testing.assert_allclose(flat, 0.5 * jnp.log(pdf[idx]), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_partitions=1), "num_partitions"),
        (dict(energy_gap=0.0), "energy_gap"),
        (dict(energy_gap=float("nan")), "energy_gap"),
        (dict(min_energy=float("inf")), "min_energy"),
        (dict(zeta=-0.5), "zeta"),
        (dict(sa_step_size=1.5), "sa_step_size"),
        (dict(min_pdf=0.5), "min_pdf"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sgmcmc.csgld(**kwargs)


def test_bad_weight_arguments():
    logd = jnp.zeros((2, 5))
    with pytest.raises(ValueError, match="energy_pdf"):
        importance_weights(logd, jnp.ones((3, 4)) / 4, energy_gap=1.0, zeta=1.0)
    with pytest.raises(ValueError, match="energy_gap"):
        importance_weights(logd, jnp.ones(4) / 4, energy_gap=-1.0, zeta=1.0)
    with pytest.raises(ValueError, match="zeta"):
        importance_weights(logd, jnp.ones(4) / 4, energy_gap=1.0, zeta=-1.0)
    with pytest.raises(ValueError, match="weights"):
        weighted_expectation(jnp.zeros((2, 5)), jnp.zeros((2, 4)))
