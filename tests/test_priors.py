import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st

from bayesnn import nn, priors


@pytest.fixture(scope="module")
def template():
    net = nn.serial(nn.Dense(30, b_std=1.0), nn.Tanh(), nn.Dense(2, b_std=1.0))
    return priors.template_of(net.init(jax.random.key(0), (4,)))


def test_isotropic_log_prob_matches_scipy(template):
    prior = priors.IsotropicGaussian.create(template, 0.7)
    params = prior.sample(jax.random.key(1))
    expected = sum(
        st.norm(0, 0.7).logpdf(np.asarray(x)).sum() for x in jax.tree_util.tree_leaves(params)
    )
    assert np.isclose(float(prior.log_prob(params)), expected, rtol=1e-5)


def test_layerwise_scales_and_gradients(template):
    prior = priors.LayerwiseGaussian.from_dicts(
        template, {"dense_0": 2.0, "dense_2": 0.5}, {"dense_0": 0.1, "dense_2": 1.0}
    )
    draws = jax.vmap(prior.sample)(jax.random.split(jax.random.key(3), 400))
    assert abs(float(draws["dense_0"]["W"].std()) / 2.0 - 1) < 0.03
    assert abs(float(draws["dense_2"]["W"].std()) / 0.5 - 1) < 0.05
    assert abs(float(draws["dense_0"]["b"].std()) / 0.1 - 1) < 0.03
    params = prior.sample(jax.random.key(4))
    grad = jax.grad(lambda p: p.log_prob(params))(prior)
    # d/ds sum log N(w|0,s) = -n/s + sum w^2/s^3
    w = np.asarray(params["dense_0"]["W"])
    expected = -w.size / 2.0 + (w**2).sum() / 8.0
    assert np.isclose(float(grad.weight_scales["dense_0"]), expected, rtol=1e-4)


def test_hierarchical_gibbs_matches_conjugate_posterior(template):
    """sigma^2 | w ~ InvGamma(a + n/2, b + ||w||^2 / 2): check moments by simulation."""
    prior = priors.HierarchicalGaussian.create(template, concentration=2.0, rate=3.0)
    params = prior.sample(jax.random.key(5))
    draws = jax.vmap(lambda k: prior.gibbs(k, params))(jax.random.split(jax.random.key(6), 4000))
    w = np.asarray(params["dense_0"]["W"])
    a, b = 2.0 + w.size / 2, 3.0 + (w**2).sum() / 2
    mean, var = b / (a - 1), b**2 / ((a - 1) ** 2 * (a - 2))
    got = np.asarray(draws["dense_0"]["W"])
    assert abs(got.mean() - mean) < 4 * np.sqrt(var / got.size)
    assert abs(got.var() / var - 1) < 4 * np.sqrt(2 / got.size) * 1.5


def test_hierarchical_marginal_is_student_t(template):
    """The marginal log density (variance integrated out) equals numerical integration."""
    prior = priors.HierarchicalGaussian.create(template, 1.5, 2.0, layers=("dense_2",))
    params = prior.sample(jax.random.key(7))
    w = np.asarray(params["dense_2"]["W"]).ravel()
    b_ = np.asarray(params["dense_2"]["b"]).ravel()

    def layer_marginal(x):
        # integrate over u = log sigma^2 on a fine grid (vectorised trapezoid rule)
        u = np.linspace(-20.0, 20.0, 20001)
        s2 = np.exp(u)[:, None]
        log_joint = (
            st.norm.logpdf(x[None, :], 0.0, np.sqrt(s2)).sum(-1)
            + st.invgamma(1.5, scale=2.0).logpdf(s2[:, 0])
            + u
        )
        shift = log_joint.max()
        return shift + np.log(np.trapezoid(np.exp(log_joint - shift), u))

    fixed = sum(
        st.norm(0, 1.0).logpdf(np.asarray(x)).sum()
        for x in jax.tree_util.tree_leaves(params["dense_0"])
    )
    expected = fixed + layer_marginal(w) + layer_marginal(b_)
    assert np.isclose(float(prior.log_prob(params)), expected, rtol=1e-4)


def test_last_layer_scale_mixture_only_readout(template):
    prior = priors.last_layer_scale_mixture(template, 2.0, 2.0)
    assert set(prior.concentration) == {"dense_2"}
    assert set(prior.fixed_scales) == {"dense_0"}
    v = prior.sample_variances(jax.random.key(0))
    assert float(v["dense_0"]["W"]) == 1.0 and float(v["dense_2"]["W"]) > 0


def test_prior_bad_input(template):
    with pytest.raises(ValueError, match="scale"):
        priors.IsotropicGaussian.create(template, 0.0)
    with pytest.raises(ValueError, match="weight_scales"):
        priors.LayerwiseGaussian.from_dicts(template, {"dense_0": 1.0}, {"dense_0": 1.0})
    with pytest.raises(ValueError, match="bias_scales"):
        priors.LayerwiseGaussian.from_dicts(
            template, {"dense_0": 1.0, "dense_2": 1.0}, {"dense_0": jnp.nan, "dense_2": 1.0}
        )
    with pytest.raises(ValueError, match="concentration"):
        priors.HierarchicalGaussian.create(template, concentration=-1.0)
    with pytest.raises(ValueError, match="not in the parameters"):
        priors.HierarchicalGaussian.create(template, layers=("dense_9",))
    with pytest.raises(ValueError, match="shape"):
        priors.check_params(
            template,
            {
                "dense_0": {"W": jnp.ones((4, 31)), "b": jnp.ones(30)},
                "dense_2": {"W": jnp.ones((30, 2)), "b": jnp.ones(2)},
            },
        )
    with pytest.raises(ValueError, match="tree structure"):
        priors.check_params(template, {"dense_0": jnp.ones(3)})
