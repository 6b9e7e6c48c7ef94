import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hst

from bayesnn import likelihoods, nn, priors
from bayesnn.model import BayesianNeuralNet, check_data, numpyro_model
from samplers import sgmcmc


@pytest.fixture(scope="module")
def regression():
    kx, ke = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (64, 3))
    y = jnp.sin(x[:, :1]) + 0.1 * jax.random.normal(ke, (64, 1))
    return x, y


@pytest.fixture(scope="module")
def model():
    arch = nn.serial(nn.Dense(16, b_std=1.0), nn.Tanh(), nn.Dense(1, b_std=1.0))
    return BayesianNeuralNet.create(
        arch, (3,), lambda t: priors.IsotropicGaussian.create(t, 1.0), likelihoods.Gaussian(0.2)
    )


def test_likelihoods_match_scipy():
    f = jnp.array([[0.3, -1.0], [2.0, 0.5]])
    y = jnp.array([[0.0, -0.5], [1.5, 1.0]])
    g = likelihoods.Gaussian(0.4)
    np.testing.assert_allclose(
        g.log_prob({}, f, y), st.norm(np.asarray(f), 0.4).logpdf(np.asarray(y)).sum(-1), rtol=1e-5
    )
    labels = jnp.array([1, 0])
    expected = np.log(np.exp(np.asarray(f)) / np.exp(np.asarray(f)).sum(-1, keepdims=True))
    np.testing.assert_allclose(
        likelihoods.Categorical().log_prob({}, f, labels), expected[[0, 1], [1, 0]], rtol=1e-5
    )
    fb = jnp.array([[0.3], [-2.0]])
    yb = jnp.array([1, 0])
    p = 1 / (1 + np.exp(-np.asarray(fb[:, 0])))
    np.testing.assert_allclose(
        likelihoods.Bernoulli().log_prob({}, fb, yb), np.log([p[0], 1 - p[1]]), rtol=1e-5
    )
    learned = likelihoods.Gaussian(noise_std=None)
    lp = learned.init_params()
    assert np.isclose(float(learned.noise(lp)), np.exp(-1.0))


def test_minibatch_logdensity_is_unbiased(model, regression):
    """Averaging the minibatch estimate over a partition of the data gives the full value."""
    x, y = regression
    pos = model.init(jax.random.key(1))
    full = model.logdensity(pos, (x, y), 64)
    parts = [model.logdensity(pos, (x[i : i + 16], y[i : i + 16]), 64) for i in range(0, 64, 16)]
    assert np.isclose(float(np.mean(parts)), float(full), rtol=1e-5)
    direct = model.prior.log_prob(pos["net"]) + model.log_likelihood(pos, (x, y)).sum()
    assert np.isclose(float(full), float(direct), rtol=1e-5)


def test_hierarchical_model_with_gibbs_block(regression):
    """SG-MCMC with the exact Gibbs step for the layer variances runs and stays consistent."""
    x, y = regression
    arch = nn.serial(nn.Dense(8, b_std=1.0), nn.Tanh(), nn.Dense(1, b_std=1.0))
    model = BayesianNeuralNet.create(
        arch,
        (3,),
        lambda t: priors.HierarchicalGaussian.create(t, 2.0, 2.0),
        likelihoods.Gaussian(0.2),
    )
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(2), 2))
    v0 = model.init_prior_state()
    init_v = jax.tree.map(lambda a: jnp.stack([a, a]), v0)
    result = sgmcmc.sample(
        jax.random.key(3),
        sgmcmc.sghmc(alpha=1.0),
        model.logdensity,
        (x, y),
        init,
        num_samples=20,
        batch_size=16,
        step_size=1e-3,
        num_burnin=50,
        thinning=5,
        gibbs_fn=model.gibbs,
        init_gibbs_state=init_v,
        progress_bar=False,
        shard=False,
    )
    var = np.asarray(result.gibbs_states["dense_0"]["W"])
    assert var.shape == (2, 20) and np.all(var > 0)
    # Gibbs draws move (not stuck at the initial value) and the idata holds both groups.
    assert np.std(var) > 0
    idata = result.to_inference_data()
    assert any("gibbs" in str(v) for v in idata.posterior.data_vars)


@pytest.fixture(scope="module")
def gaussian_result(model, regression):
    x, y = regression
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(9), 2))
    return sgmcmc.sample(
        jax.random.key(3),
        sgmcmc.sghmc(alpha=1.0),
        model.logdensity,
        (x, y),
        init,
        num_samples=10,
        batch_size=16,
        step_size=1e-3,
        num_burnin=20,
        thinning=2,
        progress_bar=False,
        shard=False,
    )


def test_model_inference_data_function_space(model, regression, gaussian_result):
    import arviz as az

    x, y = regression
    result = gaussian_result
    idata = model.to_inference_data(result, x, y)
    assert idata.posterior["f"].shape == (2, 10, 64, 1)
    assert "net.dense_0.W" not in idata.posterior  # function space by default
    ll = idata.log_likelihood["y"].values
    expected = jax.vmap(jax.vmap(model.log_likelihood, (0, None)), (0, None))(
        result.positions, (x, y)
    )
    np.testing.assert_allclose(ll, expected, rtol=1e-4, atol=1e-5)
    assert np.isfinite(az.loo(idata).elpd_loo)
    with_w = model.to_inference_data(result, x, max_weights=None)
    assert with_w.posterior["net.dense_0.W"].shape[:2] == (2, 10)


def test_posterior_predictive_group(model, regression, gaussian_result):
    """``y_rep - f`` at every draw is N(0, 0.2^2): mean and variance within 4 MC standard
    errors over the 2 x 10 x 64 replicated values; ``az.plot_ppc`` draws it."""
    import arviz as az
    import matplotlib.pyplot as plt

    x, y = regression
    idata = model.to_inference_data(gaussian_result, x, y, rng_key=jax.random.key(11))
    ppc = idata.posterior_predictive["y"]
    assert ppc.dims == ("chain", "draw", "obs", "y_dim_1") and ppc.shape == (2, 10, 64, 1)
    assert idata.observed_data["y"].dims == ("obs", "y_dim_1")
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    resid = (ppc.values - idata.posterior["f"].values).ravel()
    sigma, m = 0.2, resid.size
    assert abs(resid.mean()) < 4 * sigma / np.sqrt(m), resid.mean()
    assert abs(resid.var() / sigma**2 - 1) < 4 * np.sqrt(2 / m), resid.var() / sigma**2
    again = model.to_inference_data(gaussian_result, x, y, rng_key=jax.random.key(11))
    np.testing.assert_array_equal(again.posterior_predictive["y"].values, ppc.values)
    other = model.to_inference_data(gaussian_result, x, y, rng_key=jax.random.key(12))
    assert not np.allclose(other.posterior_predictive["y"].values, ppc.values)
    assert "posterior_predictive" not in model.to_inference_data(gaussian_result, x, y).groups()
    axes = az.plot_ppc(idata, num_pp_samples=5, random_seed=0)
    assert np.size(axes) >= 1
    plt.close("all")


@pytest.mark.parametrize("kind", ["categorical", "bernoulli"])
def test_likelihood_samples_match_their_probabilities(kind):
    """Frequencies of 4000 replicated labels per input within 4 binomial standard errors."""
    n = 4000
    if kind == "categorical":
        lik, f = likelihoods.Categorical(), jnp.array([[0.5, -1.0, 1.5], [0.0, 0.0, 2.0]])
        probs = np.asarray(jax.nn.softmax(f, -1))
    else:
        lik, f = likelihoods.Bernoulli(), jnp.array([[0.3], [-2.0]])
        probs = np.asarray(jax.nn.sigmoid(f))  # P(y = 1)
    draws = np.asarray(
        jax.vmap(lambda k: lik.sample(k, {}, f))(jax.random.split(jax.random.key(0), n))
    )
    assert draws.shape == (n, 2)
    freq = (
        np.stack([(draws == k).mean(0) for k in range(3)], -1)
        if kind == "categorical"
        else (draws == 1).mean(0)[:, None]
    )
    assert np.all(np.abs(freq - probs) < 4 * np.sqrt(probs * (1 - probs) / n)), (freq, probs)


def test_numpyro_model_scales_only_the_likelihood():
    def linreg(x, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(x @ w, s), obs=y)

    x = jax.random.normal(jax.random.key(0), (40, 2))
    y = x @ jnp.array([1.0, -1.0])
    m = numpyro_model(linreg, (x, y), jax.random.key(0))
    pos = {"w": jnp.array([0.2, 0.1]), "s": jnp.array(0.0)}  # s unconstrained (log)
    got = m.logdensity(pos, (x[:10], y[:10]), 40)
    s = 1.0
    prior = st.norm(0, 1).logpdf([0.2, 0.1]).sum() + st.halfnorm(0, 1).logpdf(s) + np.log(s)
    lik = st.norm(np.asarray(x[:10] @ pos["w"]), s).logpdf(np.asarray(y[:10])).sum()
    assert np.isclose(float(got), prior + 4.0 * lik, rtol=1e-5)


def test_numpyro_model_sampled_by_engine():
    def linreg(x, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
        numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    x = jax.random.normal(jax.random.key(4), (200, 2))
    y = x @ jnp.array([1.0, -1.0]) + 0.5 * jax.random.normal(jax.random.key(5), (200,))
    m = numpyro_model(linreg, (x, y), jax.random.key(0))
    init = jax.tree.map(lambda a: jnp.stack([a] * 4), m.init(None))
    result = sgmcmc.sample(
        jax.random.key(6),
        sgmcmc.sgld(),
        m.logdensity,
        (x, y),
        init,
        num_samples=200,
        batch_size=50,
        step_size=2e-4,
        num_burnin=300,
        thinning=2,
        progress_bar=False,
        shard=False,
    )
    cov = np.linalg.inv(np.eye(2) + np.asarray(x.T @ x) / 0.25)
    post_mean = cov @ np.asarray(x.T @ y) / 0.25
    est = np.asarray(result.positions["w"]).mean((0, 1))
    assert np.all(np.abs(est - post_mean) < 5 * np.sqrt(np.diag(cov)))


def _linreg_halfnormal(x, y):
    w = numpyro.sample("w", dist.Normal(0, 1).expand([2]).to_event(1))
    s = numpyro.sample("s", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(x @ w, s), obs=y)


@pytest.fixture(scope="module")
def linreg_data():
    x = jax.random.normal(jax.random.key(8), (60, 2))
    y = x @ jnp.array([1.0, -1.0]) + 0.3 * jax.random.normal(jax.random.key(9), (60,))
    return x, y


@pytest.fixture(scope="module")
def linreg_model(linreg_data):
    return numpyro_model(_linreg_halfnormal, linreg_data, jax.random.key(0))


def test_numpyro_init_uses_its_key_and_strategy(linreg_data, linreg_model):
    from numpyro.infer import init_to_uniform, init_to_value

    m = linreg_model
    starts = jax.vmap(m.init)(jax.random.split(jax.random.key(1), 4))
    flat = np.concatenate([np.asarray(starts["w"]), np.asarray(starts["s"])[:, None]], 1)
    assert len({tuple(r) for r in flat.round(6)}) == 4  # four different starting points
    assert np.all(np.abs(flat) < 2.0)  # init_to_uniform: (-2, 2) in the unconstrained space
    assert np.all(np.asarray(jax.vmap(m.constrain)(starts)["s"]) > 0)  # in the support
    a, b = m.init(jax.random.key(2)), m.init(jax.random.key(3))
    assert not np.allclose(a["w"], b["w"])
    narrow = numpyro_model(
        _linreg_halfnormal,
        linreg_data,
        jax.random.key(0),
        init_strategy=init_to_uniform(radius=0.1),
    )
    near = jax.vmap(narrow.init)(jax.random.split(jax.random.key(1), 4))
    assert max(float(jnp.abs(v).max()) for v in jax.tree.leaves(near)) < 0.1
    fixed = numpyro_model(
        _linreg_halfnormal,
        linreg_data,
        jax.random.key(0),
        init_strategy=init_to_value(values={"w": jnp.array([0.5, -0.5]), "s": 3.0}),
    )
    values = fixed.constrain(fixed.init(jax.random.key(4)))
    np.testing.assert_allclose(values["s"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(values["w"], [0.5, -0.5], rtol=1e-6)
    with pytest.raises(TypeError, match="init_strategy"):
        numpyro_model(_linreg_halfnormal, linreg_data, jax.random.key(0), init_strategy="uniform")


def test_numpyro_inference_data_constrained_and_unconstrained(linreg_data, linreg_model):
    x, y = linreg_data
    m = linreg_model
    assert m.constrained_sites == ("s",)
    init = jax.vmap(m.init)(jax.random.split(jax.random.key(1), 2))
    result = sgmcmc.sample(
        jax.random.key(2), sgmcmc.sgld(), m.logdensity, (x, y), init,
        num_samples=20, batch_size=20, step_size=1e-3, num_burnin=20,
        progress_bar=False, shard=False,
    )  # fmt: skip
    post = m.to_inference_data(result).posterior
    assert set(post.data_vars) == {"w", "s", "unconstrained.s"}
    assert post["s"].shape == (2, 20) and post["w"].shape == (2, 20, 2)
    s, u = post["s"].values, post["unconstrained.s"].values
    assert np.all(s > 0)
    np.testing.assert_allclose(s, np.exp(u), rtol=1e-5)  # HalfNormal: s = exp(u)
    np.testing.assert_array_equal(post["w"].values, np.asarray(result.positions["w"]))
    np.testing.assert_array_equal(u, np.asarray(result.positions["s"]))


def test_model_bad_input(model, regression):
    x, y = regression
    with pytest.raises(ValueError, match="NaN"):
        check_data(x.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="different numbers"):
        check_data(x, y[:10])
    with pytest.raises(ValueError, match="example shape"):
        check_data(x, y, input_shape=(4,))
    with pytest.raises(ValueError, match="shape"):
        model.log_likelihood(model.init(jax.random.key(0)), (x, y[:, 0]))
    with pytest.raises(ValueError, match="noise_std"):
        likelihoods.Gaussian(noise_std=0.0)
    with pytest.raises(TypeError, match="Layer"):
        BayesianNeuralNet.create("mlp", (3,), None, likelihoods.Gaussian())
    with pytest.raises(ValueError, match="one output unit"):
        likelihoods.Bernoulli().log_prob({}, jnp.zeros((3, 2)), jnp.zeros(3))


@pytest.mark.parametrize(
    "lik,f,y,err,match",
    [
        (likelihoods.Categorical(), jnp.zeros((3, 4)), jnp.array([0, 4, 1]), ValueError, "0, 4"),
        (
            likelihoods.Categorical(),
            jnp.zeros((3, 4)),
            jnp.array([0, -1, 1]),
            ValueError,
            "min -1",
        ),
        (
            likelihoods.Categorical(),
            jnp.zeros((3, 4)),
            jnp.array([0.0, 1.0, 2.0]),
            TypeError,
            "integer",
        ),
        (likelihoods.Bernoulli(), jnp.zeros((3, 1)), jnp.array([0, 2, 1]), ValueError, "0, 1"),
        (
            likelihoods.Bernoulli(),
            jnp.zeros((3, 1)),
            jnp.array([0.5, 1.0, 0.0]),
            ValueError,
            "0, 1",
        ),
        (
            likelihoods.Gaussian(1.0),
            jnp.zeros((2, 1)),
            jnp.array([[0.0], [jnp.nan]]),
            ValueError,
            "NaN",
        ),
    ],
)
def test_labels_outside_the_support_raise(lik, f, y, err, match):
    """Labels outside the likelihood's support raise naming y (eagerly and through
    BayesianNeuralNet.check_data); float labels for a Categorical fail at trace time too."""
    with pytest.raises(err, match=match):
        lik.log_prob({}, f, y)
    arch = nn.serial(nn.Dense(f.shape[-1]))
    model = BayesianNeuralNet.create(
        arch, (2,), lambda t: priors.IsotropicGaussian.create(t, 1.0), lik
    )
    x = jnp.ones((f.shape[0], 2))
    with pytest.raises(err, match=match):
        model.check_data(x, y)
    if err is TypeError:
        with pytest.raises(TypeError, match="integer"):
            jax.jit(lambda y: lik.log_prob({}, f, y))(y)


def test_lists_and_bad_likelihood_parameters():
    """Python lists are accepted as data; non-numeric data and non-finite noise raise."""
    lp = likelihoods.Categorical().log_prob({}, [[0.0, 1.0], [2.0, 0.0]], [1, 0])
    np.testing.assert_allclose(lp, -np.log1p(np.exp(-np.array([1.0, 2.0]))), rtol=1e-5)
    g = likelihoods.Gaussian(0.5).log_prob({}, [[0.0], [1.0]], [[0.0], [1.0]])
    np.testing.assert_allclose(g, np.full(2, -np.log(0.5) - 0.5 * np.log(2 * np.pi)), rtol=1e-5)
    arch = nn.serial(nn.Dense(1))
    model = BayesianNeuralNet.create(
        arch, (2,), lambda t: priors.IsotropicGaussian.create(t, 1.0), likelihoods.Gaussian(0.5)
    )
    pos = model.init(jax.random.key(0))
    x_list, y_list = [[0.0, 1.0], [1.0, 2.0]], [[0.5], [1.5]]
    np.testing.assert_allclose(
        model.log_likelihood(pos, (x_list, y_list)),
        model.log_likelihood(pos, (jnp.asarray(x_list), jnp.asarray(y_list))),
    )
    x, y = model.check_data(x_list, y_list)
    assert x.shape == (2, 2) and y.shape == (2, 1)
    with pytest.raises(TypeError, match="x must"):
        model.check_data([["a", "b"]], [[1.0]])
    with pytest.raises(ValueError, match="last axis"):
        model.check_data(x_list, [[0.5, 1.0], [1.5, 2.0]])
    for bad in (jnp.inf, float("nan"), -1.0):
        with pytest.raises(ValueError, match="noise_std"):
            likelihoods.Gaussian(noise_std=bad)
    with pytest.raises(ValueError, match="log_noise_loc"):
        likelihoods.Gaussian(noise_std=None, log_noise_loc=float("inf"))


@settings(max_examples=40, deadline=None)
@given(
    labels=hst.lists(hst.integers(-3, 8), min_size=1, max_size=6),
    k=hst.integers(1, 6),
)
def test_categorical_label_validator_property(labels, k):
    """Property: check_targets accepts exactly the label sets inside [0, K)."""
    y = np.asarray(labels, np.int32)
    valid = bool(np.all((y >= 0) & (y < k)))
    if valid:
        likelihoods.Categorical().check_targets(y, k)
    else:
        with pytest.raises(ValueError, match="outside"):
            likelihoods.Categorical().check_targets(y, k)


@settings(max_examples=40, deadline=None)
@given(values=hst.lists(hst.sampled_from([0.0, 1.0, 0.5, -1.0, 2.0]), min_size=1, max_size=6))
def test_bernoulli_label_validator_property(values):
    """Property: check_targets accepts exactly the label sets inside {0, 1}."""
    y = np.asarray(values, np.float32)
    if np.all((y == 0) | (y == 1)):
        likelihoods.Bernoulli().check_targets(y)
    else:
        with pytest.raises(ValueError, match="0, 1"):
            likelihoods.Bernoulli().check_targets(y)
