"""TFP psd_kernels as bayesnn GP kernels (bayesnn.gp.tfp; needs the ``tfp`` extra)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

tfp = pytest.importorskip("tensorflow_probability.substrates.jax")

from bayesnn import functional_prior as fp  # noqa: E402
from bayesnn.gp import RBF, GPPrior, LogNormal, Matern32, Matern52  # noqa: E402
from bayesnn.gp.tfp import TFPKernel, from_tfp  # noqa: E402
from bayesnn.nn import stax  # noqa: E402

tfk = tfp.math.psd_kernels
X = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2)), jnp.float32)
Z = jnp.asarray(np.random.default_rng(1).normal(size=(5, 2)), jnp.float32)


@pytest.mark.parametrize(
    "tfp_kernel, native",
    [
        (tfk.ExponentiatedQuadratic(amplitude=1.5, length_scale=0.7), RBF(2.25, 0.7)),
        (tfk.MaternFiveHalves(amplitude=0.8, length_scale=1.3), Matern52(0.64, 1.3)),
        (tfk.MaternThreeHalves(amplitude=2.0, length_scale=0.4), Matern32(4.0, 0.4)),
        (  # FeatureScaled divides each input dimension by its scale: an ARD lengthscale
            tfk.FeatureScaled(tfk.ExponentiatedQuadratic(amplitude=1.0), scale_diag=[0.5, 2.0]),
            RBF(1.0, jnp.asarray([0.5, 2.0])),
        ),
        (  # sums of TFP kernels (a list of kernels as a parameter)
            tfk.ExponentiatedQuadratic(amplitude=1.0, length_scale=0.7)
            + tfk.MaternFiveHalves(amplitude=0.5, length_scale=2.0),
            RBF(1.0, 0.7) + Matern52(0.25, 2.0),
        ),
    ],
    ids=["eq", "matern52", "matern32", "feature-scaled", "sum"],
)
def test_matches_native_kernels(tfp_kernel, native):
    k = from_tfp(tfp_kernel)
    np.testing.assert_allclose(k(X, Z), native(X, Z), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(k.diag(X), native.diag(X), rtol=2e-5)
    np.testing.assert_allclose(k(X), tfp_kernel.matrix(X, X), rtol=1e-6)


def test_is_a_pytree_of_its_parameters():
    k = from_tfp(tfk.MaternFiveHalves(amplitude=0.8, length_scale=1.3, name="m"))
    leaves = jax.tree.leaves(k)
    assert sorted(float(v) for v in leaves) == [0.8, 1.3]
    doubled = jax.tree.map(lambda a: 2 * jnp.asarray(a), k)
    np.testing.assert_allclose(doubled(X), Matern52(1.6**2, 2.6)(X), rtol=2e-5, atol=1e-6)


def test_gp_prior_draws_have_the_tfp_covariance():
    k = tfk.ExponentiatedQuadratic(amplitude=1.2, length_scale=0.9)
    n = 4000
    f = GPPrior(from_tfp(k)).sample(jax.random.key(0), X, n)  # float64 factorisation
    assert f.shape == (n, X.shape[0])
    cov = np.cov(np.asarray(f, np.float64), rowvar=False)
    K = np.asarray(k.matrix(X, X), np.float64)
    # sd of a sample covariance entry: sqrt((K_ii K_jj + K_ij^2) / n)
    sd = np.sqrt((np.outer(np.diag(K), np.diag(K)) + K**2) / n)
    assert np.all(np.abs(cov - K) < 5 * sd), np.max(np.abs(cov - K) / sd)


def test_lognormal_hyperprior_on_a_tfp_parameter():
    loc, scale = 0.0, 0.3
    k = TFPKernel.create(
        tfk.ExponentiatedQuadratic, amplitude=LogNormal(loc, scale), length_scale=0.9
    )
    n = 20000
    f = GPPrior(k, precision="float32").sample(jax.random.key(1), X[:1], n)[:, 0]
    # f = a z with log a ~ N(loc, scale^2): E f^2 = E a^2, Var f^2 = 3 E a^4 - (E a^2)^2
    ea2, ea4 = math.exp(2 * loc + 2 * scale**2), math.exp(4 * loc + 8 * scale**2)
    se = math.sqrt((3 * ea4 - ea2**2) / n)
    assert abs(float(jnp.mean(f**2)) - ea2) < 5 * se
    # a fixed amplitude (no hyperprior) gives E f^2 = 1: the hyperprior is really drawn
    assert abs(ea2 - 1.0) > 10 * se


def test_traced_sampling_under_jit():
    gp = GPPrior(from_tfp(tfk.MaternFiveHalves(amplitude=1.0, length_scale=0.5)))
    f, ok = jax.jit(lambda key: gp.sample_with_status(key, X, 3))(jax.random.key(2))
    assert bool(ok) and f.shape == (3, X.shape[0]) and bool(jnp.all(jnp.isfinite(f)))


def test_functional_prior_with_a_tfp_target_matches_the_native_kernel():
    arch = stax.serial(stax.Dense(8, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
    ms = fp.grid(-3.0, 3.0, 12)
    kw = dict(steps=3, num_functions=16, estimator=fp.SlicedW1())
    targets = (
        GPPrior(from_tfp(tfk.ExponentiatedQuadratic(amplitude=1.0, length_scale=0.6))),
        GPPrior(RBF(1.0, 0.6)),
    )
    (_, h_tfp), (_, h_native) = (
        fp.fit_functional_prior(arch, gp, ms, jax.random.key(3), family="gaussian", **kw)
        for gp in targets
    )
    assert np.all(np.isfinite(h_tfp.w1))
    np.testing.assert_allclose(h_tfp.w1, h_native.w1, rtol=1e-3, atol=1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="kernel must be"):
        from_tfp(RBF(1.0, 1.0))
    with pytest.raises(ValueError, match="kernel_class must be"):
        TFPKernel.create(RBF, variance=1.0)
    with pytest.raises(ValueError, match="'length_scale' must be finite"):
        TFPKernel.create(tfk.ExponentiatedQuadratic, length_scale=float("nan"))
    with pytest.raises(ValueError, match="feature_ndims must be 1"):
        from_tfp(tfk.ExponentiatedQuadratic(feature_ndims=2))
    k = TFPKernel.create(tfk.ExponentiatedQuadratic, amplitude=LogNormal(0.0, 1.0))
    with pytest.raises(ValueError, match="hyperpriors"):
        k(X)


# --------------------------------------------------------------- TFP bijectors as flow priors
def _affine(theta, dim):
    tfb = tfp.bijectors
    return tfb.Chain([tfb.Shift(theta["shift"]), tfb.Scale(jnp.exp(theta["log_scale"]))])


def _affine_init(dim):
    return {"shift": jnp.zeros(dim), "log_scale": jnp.zeros(dim)}


ARCH = stax.serial(stax.Dense(4, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))


def _template():
    from bayesnn.priors import template_of

    return template_of(ARCH.init(jax.random.key(0), (1,)))


def test_bijector_prior_log_prob_is_the_gaussian_density():
    from bayesnn.functional_prior.tfp_flows import bijector_family

    family = bijector_family(_template(), _affine, _affine_init)
    theta = jax.tree.map(
        lambda a: jnp.asarray(np.random.default_rng(4).normal(size=a.shape), a.dtype),
        family.init(),
    )
    prior = family.prior(theta)
    params = prior.sample(jax.random.key(5))
    # w = shift + exp(log_scale) z elementwise: log p(w) = sum log N(w; shift, exp(log_scale)^2)
    expected = 0.0
    for name, th in theta.items():
        w = jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(params[name])])
        s = jnp.exp(th["log_scale"])
        expected += float(
            jnp.sum(-0.5 * ((w - th["shift"]) / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi))
        )
    np.testing.assert_allclose(float(prior.log_prob(params)), expected, rtol=1e-5)


def test_bijector_prior_draws_follow_the_bijector():
    from bayesnn.functional_prior.tfp_flows import BijectorPrior

    template = _template()
    theta = {
        name: {"shift": jnp.full(d, 0.5), "log_scale": jnp.full(d, math.log(2.0))}
        for name, d in ((n, _affine_init_dim(template, n)) for n in ("dense_0", "dense_2"))
    }
    prior = BijectorPrior(template, theta, _affine)
    draws = jax.vmap(prior.sample)(jax.random.split(jax.random.key(6), 4000))
    w = np.concatenate([np.asarray(a).reshape(4000, -1) for a in jax.tree.leaves(draws)], 1)
    # each coordinate ~ N(0.5, 2^2): the mean of 4000 draws has sd 2 / sqrt(4000) = 0.032
    assert np.all(np.abs(w.mean(0) - 0.5) < 5 * 2 / math.sqrt(4000))
    assert np.all(np.abs(w.std(0) - 2.0) < 5 * 2 / math.sqrt(2 * 4000))


def _affine_init_dim(template, name):
    from bayesnn.functional_prior.tfp_flows import _layer_dims

    return _layer_dims(template)[name]


def test_fit_functional_prior_tunes_a_bijector_family():
    from bayesnn.functional_prior.tfp_flows import bijector_family

    family = bijector_family(_template(), _affine, _affine_init)
    gp = GPPrior(from_tfp(tfk.ExponentiatedQuadratic(amplitude=1.0, length_scale=0.6)))
    prior, hist = fp.fit_functional_prior(
        ARCH, gp, fp.grid(-3.0, 3.0, 12), jax.random.key(7), family=family, steps=3,
        num_functions=16, estimator=fp.SlicedW1(),
    )  # fmt: skip
    assert np.all(np.isfinite(hist.w1))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), prior.theta, family.init())
    assert max(jax.tree.leaves(moved)) > 0  # the bijector's parameters were tuned
    assert np.isfinite(float(prior.log_prob(prior.sample(jax.random.key(8)))))


def test_bijector_family_bad_input():
    from bayesnn.functional_prior.tfp_flows import BijectorPrior, bijector_family

    with pytest.raises(ValueError, match="make_bijector must be callable"):
        bijector_family(_template(), None, _affine_init)
    prior = BijectorPrior(
        _template(), bijector_family(_template(), _affine, _affine_init).init(), _affine
    )
    with pytest.raises(ValueError, match="params has 1 leaves"):
        prior.log_prob({"dense_0": jnp.zeros(3)})
