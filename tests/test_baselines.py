"""MAP network, deep ensemble and the mean predictive over positions (bayesnn.baselines)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import BayesianNeuralNet, likelihoods, nn, priors
from bayesnn.baselines import (
    deep_ensemble,
    full_data_objective,
    mean_predictive_probs,
    train_map,
    train_map_to_convergence,
)
from bayesnn.datasets import load_digits


@pytest.fixture(scope="module")
def linear_conv():
    """A conv model linear in its parameters: its MAP is a ridge regression in closed form."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5, 5, 1)).astype(np.float32)
    arch = nn.serial(nn.Conv(1, (3, 3), b_std=1.0), nn.Flatten())
    noise, prior_scale = 1.5, 0.8
    model = BayesianNeuralNet.create(
        arch,
        (5, 5, 1),
        lambda t: priors.IsotropicGaussian.create(t, prior_scale),
        likelihoods.Gaussian(noise),
    )
    flat, unravel = jax.flatten_util.ravel_pytree(model.init(jax.random.key(0))["net"])
    jac = jax.jacobian(lambda th: arch.apply(unravel(th), jnp.asarray(x)).reshape(-1))(flat * 0)
    jac = np.asarray(jac, np.float64)
    y = jac @ rng.normal(size=flat.shape) + noise * rng.normal(size=jac.shape[0])
    precision = np.eye(flat.size) / prior_scale**2 + jac.T @ jac / noise**2
    theta_map = np.linalg.solve(precision, jac.T @ y / noise**2)
    return model, x, y.reshape(12, 9).astype(np.float32), theta_map


def _flat(position):
    return np.asarray(jax.flatten_util.ravel_pytree(position["net"])[0])


def _unravel(model, theta):
    _, unravel = jax.flatten_util.ravel_pytree(model.init(jax.random.key(0))["net"])
    return unravel(jnp.asarray(theta, jnp.float32))


def test_map_is_the_posterior_mode(linear_conv):
    # weight decay equal to the prior: the optimum is the ridge solution, not least squares
    model, x, y, theta_map = linear_conv
    result = train_map(
        jax.random.key(1), model, x, y, num_steps=1500, batch_size=12, learning_rate=0.05
    )
    np.testing.assert_allclose(_flat(result.position), theta_map, atol=2e-3)
    assert result.losses.shape == (1500,)
    assert result.losses[-1] < result.losses[0]


def test_ensemble_members_start_apart_and_reach_the_unique_mode(linear_conv):
    model, x, y, theta_map = linear_conv
    ens = deep_ensemble(
        jax.random.key(2),
        model,
        x,
        y,
        num_members=3,
        num_steps=1500,
        batch_size=12,
        learning_rate=0.05,
    )
    assert ens.losses.shape == (3, 1500)
    # different initialisations (first losses differ), one optimum (convex problem)
    assert len(set(np.asarray(ens.losses[:, 0]).round(4))) == 3
    for m in range(3):
        member = jax.tree.map(lambda a: a[m], ens.position)
        np.testing.assert_allclose(_flat(member), theta_map, atol=2e-3)


@pytest.fixture(scope="module")
def digits_cnn():
    images, labels = load_digits()
    x = (images / 16.0)[..., None].astype(np.float32)
    arch = nn.serial(
        nn.Conv(4, (3, 3), padding="SAME", b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(10, b_std=1.0),
    )
    model = BayesianNeuralNet.create(
        arch, (8, 8, 1), priors.IsotropicGaussian.create, likelihoods.Categorical()
    )
    return model, x[:500], labels[:500], x[1500:1700], labels[1500:1700]


def test_ensemble_of_cnns_learns_digits_and_members_differ(digits_cnn):
    model, x, y, x_test, y_test = digits_cnn
    ens = deep_ensemble(
        jax.random.key(0),
        model,
        x,
        y,
        num_members=2,
        num_steps=600,
        batch_size=50,
        learning_rate=1e-2,
    )
    w = np.asarray(ens.position["net"]["conv_0"]["W"])
    assert not np.allclose(w[0], w[1])
    probs = mean_predictive_probs(model, ens.position, x_test)
    member_probs = [
        jax.nn.softmax(model.predict(jax.tree.map(lambda a: a[m], ens.position), x_test))
        for m in range(2)
    ]
    np.testing.assert_allclose(probs, (member_probs[0] + member_probs[1]) / 2, atol=1e-6)
    assert float((np.asarray(probs).argmax(-1) == y_test).mean()) > 0.7  # chance: 0.1


def test_mean_predictive_equals_the_mean_over_stored_draws(digits_cnn):
    model, *_, x_test, _ = digits_cnn
    positions = jax.vmap(model.init)(jax.random.split(jax.random.key(3), 6))
    stored = jax.vmap(lambda p: jax.nn.softmax(model.predict(p, x_test)))(positions)
    expect = np.asarray(stored).mean(0)
    np.testing.assert_allclose(mean_predictive_probs(model, positions, x_test), expect, atol=1e-6)
    # (chains, draws) leading axes and test batches give the same numbers
    chained = jax.tree.map(lambda a: a.reshape((2, 3, *a.shape[1:])), positions)
    np.testing.assert_allclose(
        mean_predictive_probs(model, chained, x_test, batch_size=64), expect, atol=1e-6
    )
    # the accumulator's size does not depend on the number of draws
    carried = jax.eval_shape(lambda p: mean_predictive_probs(model, p, x_test), positions)
    assert carried.shape == (x_test.shape[0], 10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y=np.full(500, 10, np.int32)), r"y holds class labels outside \[0, 10\)"),
        (dict(x=np.zeros((500, 8, 8), np.float32)), r"x has example shape \(8, 8\).*NHWC"),
        (dict(num_steps=0), "num_steps must be an integer >= 1"),
        (dict(batch_size=1000), "batch_size 1000 exceeds the data size 500"),
        (dict(learning_rate=-1.0), "learning_rate must be positive"),
    ],
)
def test_bad_input(digits_cnn, kwargs, match):
    model, x, y, *_ = digits_cnn
    args = dict(x=x, y=y, num_steps=10, batch_size=50, learning_rate=1e-2) | kwargs
    with pytest.raises(ValueError, match=match):
        train_map(jax.random.key(0), model, **args)
    with pytest.raises(ValueError, match="num_members"):
        deep_ensemble(jax.random.key(0), model, x, y, num_members=0, num_steps=1, batch_size=5)


def test_full_data_objective_is_the_exact_log_posterior(digits_cnn):
    model, x, y, *_ = digits_cnn
    position = model.init(jax.random.key(5))
    direct = jax.jit(
        lambda p: -(model.log_prior(p) + model.log_likelihood(p, (x, y)).sum()) / 500
    )(position)
    # chunks of unequal size (500 = 3 x 150 + 50) weighted by their share of the data
    got = jax.jit(lambda p: full_data_objective(model, p, x, y, batch_size=150))(position)
    np.testing.assert_allclose(got, direct, rtol=1e-5)


def test_map_to_convergence_reaches_the_ridge_solution(linear_conv):
    model, x, y, theta_map = linear_conv
    result = train_map_to_convergence(
        jax.random.key(1), model, x, y, batch_size=6, learning_rate=0.05, rtol=1e-6,
        num_decays=2, max_epochs=400,
    )  # fmt: skip
    assert result.converged
    # the closed-form mode bounds every value of the trace from below, and is reached
    mode = {"net": _unravel(model, theta_map), "likelihood": {}}
    floor = float(full_data_objective(model, mode, x, y))
    objective = np.asarray(result.objective)
    assert objective.min() >= floor - 1e-5 * abs(floor)
    assert objective.min() - floor < 1e-4 * abs(floor)
    # flat directions of the objective converge slowest: parameters to a looser tolerance
    np.testing.assert_allclose(_flat(result.position), theta_map, atol=0.05)
    # three learning rates: the initial one and two decays by 0.1
    rates = np.unique(np.asarray(result.learning_rates))
    np.testing.assert_allclose(np.sort(rates)[::-1], [0.05, 0.005, 0.0005], rtol=1e-6)


def test_map_to_convergence_stops_at_the_cap(digits_cnn):
    model, x, y, *_ = digits_cnn
    result = train_map_to_convergence(
        jax.random.key(0), model, x, y, batch_size=50, learning_rate=1e-2, max_epochs=3
    )
    assert not result.converged
    assert result.objective.shape == (4,) and result.learning_rates.shape == (3,)
    # the returned position is the best one seen
    best = jax.jit(lambda p: full_data_objective(model, p, x, y))(result.position)
    np.testing.assert_allclose(best, result.objective.min(), rtol=1e-5)


class _Shifted:
    """``model`` with a constant added to its log density per example (same gradients)."""

    def __init__(self, model, shift):
        self.model, self.shift = model, shift

    def init(self, rng_key):
        return self.model.init(rng_key)

    def check_data(self, x, y):
        return self.model.check_data(x, y)

    def logdensity(self, position, batch, data_size):
        return self.model.logdensity(position, batch, data_size) + self.shift * data_size


def test_map_to_convergence_ignores_constants_in_the_log_density(digits_cnn):
    # a prior's normalising constant (e.g. d/2 log(2 pi s^2)) must not move the stopping rule:
    # same gradients, so the same epochs, decays and stop, and objectives shifted by exactly
    # the constant (a tolerance relative to |U*| stops at once, or never, depending on it)
    model, x, y, *_ = digits_cnn
    kwargs = dict(batch_size=50, learning_rate=1e-2, rtol=0.1, num_decays=1, max_epochs=10)
    plain = train_map_to_convergence(jax.random.key(3), model, x, y, **kwargs)
    rates = np.asarray(plain.learning_rates)
    assert plain.converged and len(np.unique(rates)) == 2  # the rule acted: a decay and a stop
    for shift in (-20.0, 4.5):  # objective U + 20 (wide-prior-like) and U - 4.5 (near 0)
        model_shifted = _Shifted(model, shift)
        shifted = train_map_to_convergence(jax.random.key(3), model_shifted, x, y, **kwargs)
        np.testing.assert_array_equal(np.asarray(shifted.learning_rates), rates)
        assert shifted.converged
        np.testing.assert_allclose(
            np.asarray(shifted.objective) - np.asarray(plain.objective), -shift, atol=1e-4
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rtol=0.0), "rtol must lie in"),
        (dict(decay_factor=1.5), "decay_factor must lie in"),
        (dict(max_epochs=0), "max_epochs must be an integer >= 1"),
        (dict(num_decays=-1), "num_decays must be an integer >= 0"),
        (dict(learning_rate=0.0), "learning_rate must be positive"),
        (dict(y=np.full(500, -1, np.int32)), r"y holds class labels outside"),
    ],
)
def test_map_to_convergence_bad_input(digits_cnn, kwargs, match):
    model, x, y, *_ = digits_cnn
    args = dict(x=x, y=y, batch_size=50) | kwargs
    with pytest.raises(ValueError, match=match):
        train_map_to_convergence(jax.random.key(0), model, **args)
