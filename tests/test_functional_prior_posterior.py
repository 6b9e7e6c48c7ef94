"""Posterior sampling with functional-prior families (bayesnn.functional_prior.posterior)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesnn import functional_prior as fp
from bayesnn.datasets import make_regression_1d
from bayesnn.functional_prior import posterior as post
from bayesnn.nn import stax
from bayesnn.priors import HierarchicalGaussian, LayerwiseGaussian, template_of
from samplers.convergence import ConvergenceWarning

ARCH = stax.serial(stax.Dense(16, b_std=1.0), stax.Tanh(), stax.Dense(1, b_std=1.0))
RUN = dict(
    sampler=post.SamplerConfig(
        num_chains=2, num_samples=10, num_burnin=600, thinning=20, batch_size=32
    ),
    shard=False,
)
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def toy():
    d = make_regression_1d("sin", 64, noise_std=0.1, seed=0)
    x = (d.x_train - d.x_train.mean()) / d.x_train.std()
    y = (d.y_train - d.y_train.mean()) / d.y_train.std()
    return jnp.asarray(x), jnp.asarray(y)


@pytest.fixture(scope="module")
def template():
    return template_of(ARCH.init(jax.random.key(0), (1,)))


FAMILY_KW = {"flow": {"rng_key": jax.random.key(0)}}


def _prior(family, template):
    # a "tuned" prior as fit_functional_prior returns it: family.prior(theta), theta moved
    fam = fp.families.make_family(family, template, **FAMILY_KW.get(family, {}))
    theta = jax.tree.map(lambda a: a + 0.1, fam.init())
    return fam.prior(theta)


# flow: one more driver compile (its exact density is tested in test_functional_prior.py)
@pytest.mark.parametrize(
    "family", ["gaussian", "hierarchical", pytest.param("flow", marks=pytest.mark.slow)]
)
def test_sample_posterior_each_family_fits_toy(family, template, toy):
    x, y = toy
    prior = _prior(family, template)
    # 2 chains x 10 draws: far too few for ESS >= 100, so the run must say so
    with pytest.warns(ConvergenceWarning, match="fp.sample_posterior"):
        res = post.sample_posterior(ARCH, prior, (x, y), jax.random.key(1), **RUN)
    assert res.result.info.is_finite.all()
    assert res.idata.posterior["f"].shape == (2, 10, 64, 1)
    assert res.rhat.shape == (64, 1) and np.all(np.isfinite(res.rhat))
    m = post.regression_metrics(res, x, y)
    # trivial predictor N(mean, var(y)) on standardised targets: RMSE 1, NLL 0.5 log(2 pi e)
    trivial_nll = 0.5 * math.log(2 * math.pi * math.e)
    assert m["rmse"] < 0.6 and np.isfinite(m["nll"]) and m["nll"] < trivial_nll - 0.3
    if family == "hierarchical":
        v = np.asarray(res.result.gibbs_states["dense_0"]["W"])
        assert v.shape == (2, 10) and np.all(v > 0) and np.std(v) > 0
        assert isinstance(res.model.prior, HierarchicalGaussian)
    f = post.predict(res, x[:5])
    assert f.shape == (20, 5, 1)
    assert res.convergence is not None and not res.convergence.converged
    assert res.convergence.min_ess < 100


@pytest.mark.slow  # one more driver compile; benchmarks/fprior_uci.py runs moons too
def test_sample_posterior_classification_multioutput():
    from sklearn.datasets import make_moons

    xm, labels = make_moons(128, noise=0.1, random_state=0)
    xm = (xm - xm.mean(0)) / xm.std(0)
    arch = stax.serial(stax.Dense(16, b_std=1.0), stax.Tanh(), stax.Dense(2, b_std=1.0))
    tmpl = template_of(arch.init(jax.random.key(0), (2,)))
    res = post.sample_posterior(
        arch,
        LayerwiseGaussian.create(tmpl, 1.0, 1.0),
        (xm.astype(np.float32), labels.astype(np.int32)),
        jax.random.key(2),
        **RUN,
    )
    m = post.classification_metrics(res, xm.astype(np.float32), labels)
    assert m["accuracy"] > 0.8 and m["nll"] < math.log(2)
    assert res.rhat.shape == (128, 2)


def test_sample_posterior_bad_input(template, toy):
    x, y = toy
    prior = LayerwiseGaussian.create(template)
    with pytest.raises(ValueError, match="architecture"):
        post.sample_posterior("mlp", prior, (x, y), KEY)
    with pytest.raises(ValueError, match="data"):
        post.sample_posterior(ARCH, prior, x, KEY)
    with pytest.raises(ValueError, match="NaN"):
        post.sample_posterior(ARCH, prior, (x.at[0, 0].set(jnp.nan), y), KEY)
    with pytest.raises(ValueError, match="init"):
        post.sample_posterior(ARCH, prior, (x, y), KEY, init="zeros")
    with pytest.raises(ValueError, match="noise_var"):
        post.sample_posterior(ARCH, prior, (x, y), KEY, noise_var=0.0)
    with pytest.raises(ValueError, match="grad_clip"):
        post.sample_posterior(ARCH, prior, (x, y), KEY, sampler=post.SamplerConfig(grad_clip=-1.0))


def test_public_names_have_docstrings():
    for name in post.__all__:
        assert getattr(post, name).__doc__, name
