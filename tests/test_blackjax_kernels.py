"""BlackJAX's own SG kernels (``blackjax.sgld``, ``blackjax.sghmc``) through the driver.

Target: the conjugate Gaussian of tests/test_sgmcmc.py, ``theta | y ~ N(sum y / (N + 1),
I / (N + 1))`` (curvature ``lambda = N + 1``).
"""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

from samplers import sgmcmc

N, D = 100, 2
Z = 4.0  # |z| bound: 99.99% two-sided for one statistic


@pytest.fixture(scope="module")
def data():
    return jax.random.normal(jax.random.key(42), (N, D)) + jnp.array([[1.0, -2.0]])


def logdensity(theta, batch, data_size):
    return -0.5 * jnp.sum(theta**2) - 0.5 * data_size * jnp.mean(
        jnp.sum((batch - theta[None, :]) ** 2, -1)
    )


def test_blackjax_sgld_gives_the_draws_of_our_sgld(data):
    """Same integrator and noise convention (``sqrt(2 T h) xi``, BlackJAX's Gaussian noise
    from the step key): the same key gives the same draws, minibatches and all."""
    kw = dict(
        num_samples=30, batch_size=20, step_size=2e-3, num_burnin=10, thinning=2,
        progress_bar=False, shard=False,
    )  # fmt: skip
    init = jax.random.normal(jax.random.key(0), (3, D))
    ours = sgmcmc.sample(jax.random.key(7), sgmcmc.sgld(), logdensity, data, init, **kw)
    theirs = sgmcmc.sample(jax.random.key(7), blackjax.sgld, logdensity, data, init, **kw)
    np.testing.assert_allclose(theirs.positions, ours.positions, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(theirs.info.logdensity, ours.info.logdensity, rtol=1e-6)
    # the draws move (a kernel that ignored the gradient or noise would not match above)
    assert np.abs(np.diff(np.asarray(ours.positions), axis=1)).min() > 0


def _blackjax_sghmc_variance(h, num_steps, lam, alpha, beta=0.0, temperature=1.0):
    """Stationary variance of BlackJAX's SGHMC on ``U = lam theta^2 / 2`` (full batch).

    Each call draws ``p ~ N(0, 1)`` and makes ``num_steps`` explicit-Euler steps
    ``(theta, p) <- A (theta, p) + (0, sigma xi)``, ``A = [[1, h], [-h lam, 1 - alpha h]]``,
    ``sigma^2 = h T (2 alpha - h T beta)``; the call maps ``Var(theta) = v`` to ``a v + b``,
    whose fixed point ``b / (1 - a)`` is the stationary variance.
    """
    a_mat = np.array([[1.0, h], [-h * lam, 1.0 - alpha * h]])
    q = np.diag([0.0, h * temperature * (2 * alpha - h * temperature * beta)])

    def var_after_call(v):
        s = np.diag([v, 1.0])
        for _ in range(num_steps):
            s = a_mat @ s @ a_mat.T + q
        return s[0, 0]

    b = var_after_call(0.0)
    a = var_after_call(1.0) - b
    return b / (1.0 - a)


def test_blackjax_sghmc_samples_the_gaussian_posterior(data):
    """Mean within MC error of the exact posterior mean; variance within MC error of the
    stationary variance of BlackJAX's recurrence, which is within 8% of the posterior's at
    this step size (explicit Euler inflates it by about ``num_steps h^2 lambda / 3``)."""
    h, steps, alpha = 0.005, 20, 0.01
    mean, var = np.asarray(data.sum(0) / (N + 1)), 1.0 / (N + 1)
    predicted = _blackjax_sghmc_variance(h, steps, N + 1, alpha)
    assert abs(predicted / var - 1) < 0.08, predicted / var
    kernel = sgmcmc.blackjax_kernel(blackjax.sghmc, num_integration_steps=steps, alpha=alpha)
    result = sgmcmc.sample(
        jax.random.key(1), kernel, logdensity, data, jnp.zeros((8, D)),
        num_samples=500, batch_size=N, step_size=h, num_burnin=200, thinning=2,
        progress_bar=False, shard=False,
    )  # fmt: skip
    draws = np.asarray(result.positions, np.float64)
    ess = effective_sample_size(draws)
    assert np.all(ess > 500), ess
    z_mean = (draws.mean((0, 1)) - mean) / np.sqrt(var / ess)
    z_var = (draws.var((0, 1)) / predicted - 1.0) / np.sqrt(2.0 / ess)
    assert np.all(np.abs(z_mean) < Z), z_mean
    assert np.all(np.abs(z_var) < Z), (z_var, draws.var((0, 1)) / var)


def test_blackjax_kernels_are_cached_and_named(data):
    kernel = sgmcmc.blackjax_kernel(blackjax.sghmc, num_integration_steps=3, alpha=0.5)
    assert kernel == sgmcmc.blackjax_kernel(blackjax.sghmc, alpha=0.5, num_integration_steps=3)
    assert hash(kernel) == hash(sgmcmc.blackjax_kernel(blackjax.sghmc.differentiable, alpha=0.5,
                                                       num_integration_steps=3))  # fmt: skip
    assert kernel.name == "blackjax.sghmc(alpha=0.5, num_integration_steps=3)"
    assert sgmcmc.blackjax_kernels.as_kernel(blackjax.sgld).name == "blackjax.sgld"


def test_blackjax_kernel_errors(data):
    base = dict(num_samples=5, batch_size=10, step_size=1e-3, progress_bar=False, shard=False)
    init = jnp.zeros((2, D))
    with pytest.raises(TypeError, match="blackjax.sgld, blackjax.sghmc"):
        sgmcmc.sample(jax.random.key(0), blackjax.nuts, logdensity, data, init, **base)
    user_built = blackjax.sgld(lambda p, b: jax.grad(logdensity)(p, b, N))
    with pytest.raises(TypeError, match="built by the user"):
        sgmcmc.sample(jax.random.key(0), user_built, logdensity, data, init, **base)
    with pytest.raises(ValueError, match="num_integration_steps"):
        sgmcmc.blackjax_kernel(blackjax.sghmc, num_integration_steps=0)
    with pytest.raises(ValueError, match="alpha"):
        sgmcmc.blackjax_kernel(blackjax.sghmc, alpha=-1.0)
    with pytest.raises(ValueError, match="no hyperparameter"):
        sgmcmc.blackjax_kernel(blackjax.sgld, alpha=1.0)
    with pytest.raises(ValueError, match="no step-size rule"):
        sgmcmc.sample(
            jax.random.key(0), blackjax.sgld, logdensity, data, init,
            **{**base, "step_size": None, "num_burnin": 24},
        )  # fmt: skip
