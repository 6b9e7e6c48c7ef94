"""Bayesian CNNs: priors on conv kernels, tempered posteriors, sampling, bad input.

The sharpest cheap check of the tempered posterior is a conv network that is linear in its
parameters (one ``Conv`` + ``Flatten``, Gaussian likelihood): its posterior is Gaussian in
closed form, and the tempered posterior ``p^{1/T}`` keeps the mean and multiplies the
covariance by ``T``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesnn import BayesianNeuralNet, likelihoods, nn, priors
from bayesnn.baselines import mean_predictive_probs
from bayesnn.datasets import load_digits
from samplers import sgmcmc

# --------------------------------------------------------------------------------------------
# a conv model with a closed-form posterior


def _linear_conv_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5, 5, 1)).astype(np.float32)
    arch = nn.serial(nn.Conv(1, (3, 3), b_std=1.0), nn.Flatten())
    noise = 1.5
    model = BayesianNeuralNet.create(
        arch,
        (5, 5, 1),
        lambda t: priors.IsotropicGaussian.create(t, 1.0),
        likelihoods.Gaussian(noise),
    )
    template = model.init(jax.random.key(0))["net"]
    flat, unravel = jax.flatten_util.ravel_pytree(template)
    jac = jax.jacobian(lambda th: arch.apply(unravel(th), jnp.asarray(x)).reshape(-1))(flat * 0)
    jac = np.asarray(jac, np.float64)
    theta_true = rng.normal(size=flat.shape)
    y = (jac @ theta_true + noise * rng.normal(size=jac.shape[0])).reshape(12, 9)
    precision = np.eye(flat.size) + jac.T @ jac / noise**2
    cov = np.linalg.inv(precision)
    mean = cov @ jac.T @ y.reshape(-1) / noise**2
    return model, x, y.astype(np.float32), unravel, mean, cov, precision


@pytest.fixture(scope="module")
def linear_conv():
    return _linear_conv_problem()


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_temperature_scales_the_posterior_covariance(linear_conv, temperature):
    model, x, y, unravel, mean, cov, precision = linear_conv
    lam_max = np.linalg.eigvalsh(precision).max()
    h = 0.15 / np.sqrt(lam_max)
    chains, draws, thin = 64, 100, 20
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(1), chains))
    result = model.sample(
        jax.random.key(2),
        sgmcmc.sghmc(alpha=2.0),
        x,
        y,
        init,
        temperature=temperature,
        num_samples=draws,
        thinning=thin,
        num_burnin=600,
        batch_size=x.shape[0],
        step_size=float(h),
        progress_bar=False,
    )
    flat = jax.vmap(jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0]))(
        result.positions["net"]
    )
    flat = np.asarray(flat, np.float64).reshape(chains * draws, -1)
    n = flat.shape[0]
    var_exact = temperature * np.diag(cov)
    # Monte Carlo tolerances from the number of draws (thinned to be nearly independent;
    # a factor 2 allows for the remaining autocorrelation) plus the O(h^2) SGHMC bias.
    mean_err = np.abs(flat.mean(0) - mean) / np.sqrt(2 * var_exact / n)
    assert mean_err.max() < 4.5, mean_err
    var_ratio = flat.var(0) / var_exact
    assert np.all(np.abs(var_ratio - 1) < 4.5 * np.sqrt(2 * 2 / n) + 0.03), var_ratio


# --------------------------------------------------------------------------------------------
# priors on conv parameter pytrees


def _tiny_cnn(num_classes=10):
    return nn.serial(
        nn.Conv(4, (3, 3), padding="SAME", b_std=1.0),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(num_classes, b_std=1.0),
    )


def test_priors_on_conv_kernels_match_scipy():
    arch = _tiny_cnn()
    params = arch.init(jax.random.key(0), (8, 8, 1))
    template = priors.template_of(params)
    names = template.layer_names()
    assert names == ("conv_0", "dense_4")
    leaves = {(ln, k): np.asarray(v, np.float64) for ln, d in params.items() for k, v in d.items()}

    iso = priors.IsotropicGaussian.create(template, 0.7)
    expect = sum(stats.norm(0, 0.7).logpdf(v).sum() for v in leaves.values())
    np.testing.assert_allclose(iso.log_prob(params), expect, rtol=1e-5)

    lw = priors.LayerwiseGaussian.from_dicts(
        template, {"conv_0": 0.5, "dense_4": 2.0}, {"conv_0": 1.5, "dense_4": 0.3}
    )
    scale = {
        ("conv_0", "W"): 0.5,
        ("conv_0", "b"): 1.5,
        ("dense_4", "W"): 2.0,
        ("dense_4", "b"): 0.3,
    }
    expect = sum(stats.norm(0, scale[k]).logpdf(v).sum() for k, v in leaves.items())
    np.testing.assert_allclose(lw.log_prob(params), expect, rtol=1e-5)
    draw = lw.sample(jax.random.key(3))
    assert draw["conv_0"]["W"].shape == (3, 3, 1, 4)

    hier = priors.HierarchicalGaussian.create(template, 2.0, 3.0)
    variances = {"conv_0": {"W": 0.4, "b": 2.0}, "dense_4": {"W": 1.3, "b": 0.2}}
    expect = sum(
        stats.norm(0, np.sqrt(variances[ln][k])).logpdf(v).sum() for (ln, k), v in leaves.items()
    )
    np.testing.assert_allclose(hier.log_prob(params, variances), expect, rtol=1e-5)
    # marginal: per layer a multivariate t_{2a}(0, b/a I) (closed form against scipy)
    expect = sum(
        stats.multivariate_t(np.zeros(v.size), 1.5 * np.eye(v.size), df=4.0).logpdf(v.ravel())
        for v in leaves.values()
    )
    np.testing.assert_allclose(hier.log_prob(params), expect, rtol=1e-4)


def test_hierarchical_gibbs_on_conv_kernel_is_the_inverse_gamma_conditional():
    arch = _tiny_cnn()
    params = arch.init(jax.random.key(0), (8, 8, 1))
    hier = priors.HierarchicalGaussian.create(priors.template_of(params), 2.0, 3.0)
    w = np.asarray(params["conv_0"]["W"], np.float64)
    a, b = 2.0 + w.size / 2, 3.0 + (w**2).sum() / 2
    draws = jax.vmap(lambda k: hier.gibbs(k, params)["conv_0"]["W"])(
        jax.random.split(jax.random.key(1), 4000)
    )
    draws = np.asarray(draws, np.float64)
    dist = stats.invgamma(a, scale=b)
    assert abs(draws.mean() - dist.mean()) < 4 * dist.std() / np.sqrt(draws.size)
    assert stats.kstest(draws, dist.cdf).pvalue > 1e-3


# --------------------------------------------------------------------------------------------
# end to end on 8x8 digits


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits()
    x = (images / 16.0)[..., None].astype(np.float32)
    return x[:400], labels[:400], x[1500:1700], labels[1500:1700]


@pytest.mark.parametrize("prior", ["layerwise", "hierarchical"])
def test_cyclical_sghmc_cnn_on_digits(digits, prior):
    x, y, x_test, y_test = digits
    factory = {
        "layerwise": lambda t: priors.LayerwiseGaussian.create(t, 1.0, 1.0),
        # inverse-gamma variances on the conv layer; a hierarchical readout can collapse
        # (variance and weights shrink together when the exploration phase optimises)
        "hierarchical": lambda t: priors.HierarchicalGaussian.create(
            t, 2.0, 2.0, layers=("conv_0",)
        ),
    }[prior]
    model = BayesianNeuralNet.create(_tiny_cnn(), (8, 8, 1), factory, likelihoods.Categorical())
    chains, steps = 2, 400
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), chains))
    h0 = float(np.sqrt(0.2 / x.shape[0]))
    result = model.sample(
        jax.random.key(1),
        sgmcmc.sghmc(alpha=0.1 / h0),
        x,
        y,
        init,
        num_samples=40,
        thinning=10,
        batch_size=50,
        step_size=sgmcmc.schedules.cyclical(h0, steps, 2, exploration_ratio=0.7),
        progress_bar=False,
    )
    keep = ~np.asarray(result.info.explore).any(axis=0)
    assert 0 < keep.sum() < keep.size
    positions = jax.tree.map(lambda a: a[:, keep], result.positions)
    probs = np.asarray(mean_predictive_probs(model, positions, x_test))
    assert probs.shape == (200, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    acc = (probs.argmax(-1) == y_test).mean()
    assert acc > 0.6, acc  # chance is 0.1
    if prior == "hierarchical":
        v = np.asarray(result.gibbs_states["conv_0"]["W"])
        assert v.shape == (chains, 40) and np.all(v > 0)


# --------------------------------------------------------------------------------------------
# bad input, all before anything is compiled


class _Sentinel(Exception):
    pass


def _exploding_kernel():
    def init(position):
        raise _Sentinel("the sampler was reached")

    return sgmcmc.SGMCMCKernel(init, None, "exploding")


@pytest.fixture(scope="module")
def fashion_like_model():
    arch = nn.serial(
        nn.Conv(2, (3, 3), padding="SAME"),
        nn.Relu(),
        nn.AvgPool((2, 2), (2, 2)),
        nn.Flatten(),
        nn.Dense(10),
    )
    model = BayesianNeuralNet.create(
        arch, (28, 28, 1), priors.IsotropicGaussian.create, likelihoods.Categorical()
    )
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 2))
    return model, init


@pytest.mark.parametrize(
    "case, match",
    [
        ("not_nhwc", r"x has example shape \(28, 28\).*NHWC"),
        ("wrong_size", r"x has example shape \(8, 8, 1\), expected \(28, 28, 1\)"),
        ("label_high", r"y holds class labels outside \[0, 10\)"),
        ("label_negative", r"y holds class labels outside \[0, 10\)"),
        ("label_float", r"y must hold integer class labels"),
        ("temperature_zero", r"temperature must be positive"),
        ("temperature_negative", r"temperature must be positive"),
        ("temperature_nan", r"temperature must be positive"),
        ("x_nan", r"x contains NaN"),
    ],
)
def test_bad_input_raises_before_sampling(fashion_like_model, case, match):
    model, init = fashion_like_model
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.array([0, 1, 2, 9], np.int32)
    temperature = 1.0
    if case == "not_nhwc":
        x = x[..., 0]
    elif case == "wrong_size":
        x = np.zeros((4, 8, 8, 1), np.float32)
    elif case == "label_high":
        y = np.array([0, 1, 2, 10], np.int32)
    elif case == "label_negative":
        y = np.array([0, -1, 2, 3], np.int32)
    elif case == "label_float":
        y = y.astype(np.float32)
    elif case == "x_nan":
        x[1, 3, 3, 0] = np.nan
    else:
        temperature = {
            "temperature_zero": 0.0,
            "temperature_negative": -1.0,
            "temperature_nan": float("nan"),
        }[case]
    with pytest.raises((ValueError, TypeError), match=match):
        model.sample(
            jax.random.key(0),
            _exploding_kernel(),
            x,
            y,
            init,
            temperature=temperature,
            num_samples=1,
            batch_size=2,
            step_size=1e-3,
        )


def test_conv_architecture_rejects_a_non_image_input_shape():
    with pytest.raises(ValueError, match="NHWC"):
        BayesianNeuralNet.create(
            _tiny_cnn(), (64,), priors.IsotropicGaussian.create, likelihoods.Categorical()
        )


def test_valid_input_reaches_the_sampler(fashion_like_model):
    model, init = fashion_like_model
    x = np.zeros((4, 28, 28, 1), np.float32)
    y = np.array([0, 1, 2, 9], np.int32)
    with pytest.raises(_Sentinel):
        model.sample(
            jax.random.key(0),
            _exploding_kernel(),
            x,
            y,
            init,
            num_samples=1,
            batch_size=2,
            step_size=1e-3,
        )


# --------------------------------------------------------------------------------------------
# the posterior predictive averaged inside the compiled run


def test_streamed_predictive_equals_the_mean_of_stored_draws(digits):
    x, y, x_test, _ = digits
    model = BayesianNeuralNet.create(
        _tiny_cnn(), (8, 8, 1), priors.IsotropicGaussian.create, likelihoods.Categorical()
    )
    init = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 2))
    schedule = sgmcmc.schedules.cyclical(0.02, 60, 2, exploration_ratio=0.5)
    settings = dict(num_burnin=4, thinning=2, batch_size=50, step_size=schedule)
    acc = model.predictive_accumulator(x_test, step_size=schedule, num_burnin=4, thinning=2)
    kernel = sgmcmc.sghmc(alpha=5.0)
    result = model.sample(
        jax.random.key(1), kernel, x, y, init, num_samples=28, accumulate=acc,
        progress_bar=False, **settings,
    )  # fmt: skip
    keep = ~np.asarray(result.info.explore)  # (chains, draws)
    assert 0 < keep[0].sum() < keep.shape[1]
    probs = jax.vmap(jax.vmap(lambda p: jax.nn.softmax(model.predict(p, x_test))))(
        result.positions
    )
    probs = np.asarray(probs)
    for c in range(2):
        expect = probs[c, keep[c]].mean(0)
        np.testing.assert_allclose(result.accumulated.mean[c], expect, atol=2e-6)
        assert int(result.accumulated.count[c]) == keep[c].sum()
    pooled = probs[keep].mean(0)  # equal counts per chain
    np.testing.assert_allclose(result.accumulated.combine(), pooled, atol=2e-6)
    # the same keys without storing draws: same numbers, and the kept state's size does not
    # depend on the number of draws
    short = model.sample(
        jax.random.key(1), kernel, x, y, init, num_samples=28, accumulate=acc,
        store_draws=False, progress_bar=False, **settings,
    )  # fmt: skip
    assert short.positions is None
    np.testing.assert_allclose(short.accumulated.mean, result.accumulated.mean, atol=1e-6)
    longer = jax.eval_shape(lambda s: jax.vmap(acc.update)(jax.vmap(acc.init)(s), s), result.state)
    assert longer.mean.shape == result.accumulated.mean.shape == (2, 200, 10)
