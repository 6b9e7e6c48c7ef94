"""Fixed diagonal mass: Fisher diagonal, change of variables, sampling an ill-conditioned target."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import sgmcmc
from samplers.sgmcmc.step_size import rule_for, stationary_variance_ratio


def _loglik(position, example):
    """Logistic regression log-likelihood of one example ``(x, y)``, ``y`` in {0, 1}."""
    x, y = example
    logit = jnp.dot(x, position["w"]) + position["b"][0]
    return y * jax.nn.log_sigmoid(logit) + (1.0 - y) * jax.nn.log_sigmoid(-logit)


@pytest.fixture(scope="module")
def problem():
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (7, 3))
    y = (jax.random.uniform(kw, (7,)) < 0.5).astype(jnp.float32)
    position = {"w": jnp.array([0.3, -0.7, 1.1]), "b": jnp.array([0.2])}
    return x, y, position


def test_fisher_diagonal_is_the_sum_of_squared_per_example_gradients(problem):
    x, y, position = problem
    # closed form: d/dlogit log p(y | logit) = y - sigmoid(logit)
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    residual = ys - 1.0 / (1.0 + np.exp(-(xs @ np.asarray(position["w"]) + position["b"][0])))
    expected = {
        "w": (residual[:, None] ** 2 * xs**2).sum(0),
        "b": (residual**2).sum(keepdims=True),
    }
    got = sgmcmc.empirical_fisher_diagonal(_loglik, position, (x, y), batch_size=4)  # 4 + 3
    for name in position:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)
    mass = sgmcmc.DiagonalMass.from_fisher(_loglik, position, (x, y), 0.25, batch_size=4)
    np.testing.assert_allclose(mass.precision["w"], expected["w"] + 0.25, rtol=1e-5)
    prior = {"w": jnp.full(3, 2.0), "b": jnp.array([3.0])}
    mass = sgmcmc.DiagonalMass.from_fisher(_loglik, position, (x, y), prior, batch_size=4)
    np.testing.assert_allclose(mass.precision["b"], expected["b"] + 3.0, rtol=1e-5)


def test_change_of_variables_round_trip_and_logdensity(problem):
    x, y, position = problem
    mass = sgmcmc.DiagonalMass.from_precision(
        {"w": jnp.array([0.5, 4.0, 100.0]), "b": jnp.array([9.0])}, position
    )
    draws = jax.tree.map(  # leading (chain, draw) axes
        lambda a: jax.random.normal(jax.random.key(a.size), (2, 5, *a.shape)), position
    )
    z = mass.to_z(draws)
    np.testing.assert_allclose(
        z["w"], np.asarray(draws["w"]) * np.sqrt(mass.precision["w"]), rtol=1e-6
    )
    back = mass.from_z(z)
    for name in position:
        np.testing.assert_allclose(back[name], draws[name], rtol=1e-6, atol=1e-7)

    def logdensity(theta, batch, data_size):
        return jnp.sum(jax.vmap(_loglik, in_axes=(None, 0))(theta, batch)) * data_size / 7

    logdensity_z = mass.logdensity(logdensity)

    @jax.jit
    def values_and_grads(z, theta):
        vz, gz = jax.value_and_grad(logdensity_z)(z, (x, y), 7)
        vt, gt = jax.value_and_grad(logdensity)(theta, (x, y), 7)
        return vz, vt, gz, gt

    vz, vt, gz, gt = values_and_grads(mass.to_z(position), position)
    np.testing.assert_allclose(vz, vt, rtol=1e-6)
    # the chain rule: grad_z = P^{-1/2} grad_theta
    np.testing.assert_allclose(gz["w"], gt["w"] / np.sqrt(mass.precision["w"]), rtol=1e-5)


def test_exact_mass_samples_an_ill_conditioned_gaussian_at_a_step_that_breaks_plain_sghmc():
    """Gaussian with precisions 1 and 1e4. In z both curvatures are 1: SGHMC (exact gradient)
    at h = 0.2, alpha = 2 is stable, and the marginal variances match 1/P up to the
    discretisation factor r(h) predicted for the kernel (about 1%), within 4 Monte Carlo
    standard errors of the mean of theta^2 (batch means). The effective number of draws
    (2 / stderr^2, about 1,500 of 4,000 kept) must exceed 500: the chain mixes in both
    directions. Plain SGHMC at the same step is unstable in the stiff direction
    (h^2 * 1e4 = 400 > 4): it leaves the finite numbers (the driver would raise a
    DivergenceError; the kernel is stepped directly here)."""
    precision = jnp.array([1.0, 1e4])
    h, alpha, chains = 0.2, 2.0, 8

    def logdensity(theta, batch, data_size):
        del batch, data_size
        return -0.5 * jnp.sum(precision * theta**2)

    kernel = sgmcmc.sghmc(alpha=alpha)
    data = jnp.zeros((1, 1))
    mass = sgmcmc.DiagonalMass.from_precision(precision, jnp.zeros(2))
    theta0 = jnp.tile(jnp.array([1.0, 0.01]), (chains, 1))
    common = dict(num_burnin=100, num_samples=500, thinning=4, batch_size=1, step_size=h)
    result = sgmcmc.sample(
        jax.random.key(1), kernel, mass.logdensity(logdensity), data, mass.to_z(theta0),
        progress_bar=False, **common,
    )  # fmt: skip
    theta = np.asarray(mass.from_z(result.positions), np.float64)  # (chains, draws, 2)
    r = float(stationary_variance_ratio(rule_for(kernel), h, 1.0, 0.0))
    assert 1.0 < r < 1.1  # the kernel's own bias at this step, in z (unit curvature)
    squares = theta**2 * np.asarray(precision) / r  # mean 1 under the kernel's stationary law
    # standard error of the mean from batch means (8 chains x 10 batches of 200 steps, each
    # about 40 time units, many relaxation times in z), and the effective number of draws
    # it implies (Var(theta^2 P / r) = 2 for a Gaussian)
    means = squares.reshape(chains, 10, -1, 2).mean(axis=2).reshape(-1, 2)
    stderr = means.std(axis=0, ddof=1) / np.sqrt(means.shape[0])
    assert (2.0 / stderr**2 > 500).all(), 2.0 / stderr**2
    np.testing.assert_array_less(np.abs(squares.mean(axis=(0, 1)) - 1.0), 4 * stderr)

    # plain SGHMC, same kernel, step, start and number of steps, exact gradient
    def run(key, position):
        def body(state, key):
            value, grad = jax.value_and_grad(logdensity)(state.position, None, 1)
            state, _ = kernel.step(key, state, value, grad, h, 1.0, False)
            return state, state.position

        steps = common["num_burnin"] + common["num_samples"] * common["thinning"]
        return jax.lax.scan(body, kernel.init(position), jax.random.split(key, steps))[1]

    plain = np.asarray(jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(2), chains), theta0))
    stiff = np.abs(plain[..., 1])
    assert not (np.isfinite(stiff).all() and stiff.max() < 1e3), stiff.max()


def test_bad_precision_is_refused_naming_the_leaf(problem):
    _, _, position = problem
    good = {"w": jnp.ones(3), "b": jnp.ones(1)}
    for bad, value in ((0.0, "0.0"), (-1.0, "-1.0"), (jnp.nan, "nan")):
        precision = {"w": good["w"].at[1].set(bad), "b": good["b"]}
        with pytest.raises(ValueError, match=rf"precision\['w'\].*finite and positive.*{value}"):
            sgmcmc.DiagonalMass.from_precision(precision, position)
    with pytest.raises(ValueError, match=r"precision\['b'\] has shape \(2,\)"):
        sgmcmc.DiagonalMass.from_precision({"w": good["w"], "b": jnp.ones(2)}, position)
    with pytest.raises(ValueError, match="structure"):
        sgmcmc.DiagonalMass.from_precision({"w": good["w"]}, position)
    mass = sgmcmc.DiagonalMass.from_precision(good, position)
    with pytest.raises(ValueError, match=r"precision\['w'\] has shape \(3,\).*\(2, 4\)"):
        mass.to_z({"w": jnp.ones((2, 4)), "b": jnp.ones((2, 1))})
    with pytest.raises(ValueError, match="structure"):
        mass.from_z([jnp.ones(3), jnp.ones(1)])
