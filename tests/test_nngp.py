"""Tests of NNGP regression and scale mixtures (bayesnn.nngp)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats as st
from threadpoolctl import threadpool_limits

from bayesnn import nngp
from bayesnn.nn import stax
from bayesnn.nn.kernels import kernel_fn


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """OpenBLAS threads spin on a loaded 2-core machine (a 500 x 500 Cholesky: 0.5 s instead
    of 0.006 s); one thread for this module's LAPACK calls, restored afterwards."""
    with threadpool_limits(1, user_api="blas"):
        yield


_log_prob = jax.jit(lambda d, y: d.log_prob(y))  # one compiled program per distribution type


def _kernels(arch, x, xt, get=("nngp", "ntk")):
    """Train, test-train and test-diagonal blocks from one kernel call (float64)."""
    n = x.shape[0]
    with jax.enable_x64(True):
        out = kernel_fn(arch, jnp.asarray(np.concatenate([x, xt])), get=get)
        return [(M[:n, :n], M[n:, :n], jnp.diagonal(M)[n:]) for M in out]


@pytest.fixture(scope="module")
def problem():
    """1-D regression with heavy-tailed noise and NNGP/NTK matrices (float64)."""
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-3, 3, size=30))[:, None]
    y = np.sin(x[:, 0]) + 0.3 * rng.standard_t(3, size=30)
    xt = np.linspace(-4, 4, 9)[:, None]
    arch = stax.serial(
        stax.Dense(512, 1.5, 0.2),
        stax.Relu(),
        stax.Dense(512, 1.5, 0.2),
        stax.Relu(),
        stax.Dense(1, 1.0, None),
    )
    (K, Kx, kd), (T, Tx, _) = _kernels(arch, x, xt)
    return dict(K=K, T=T, Kx=Kx, Tx=Tx, kd=kd, y=jnp.asarray(y), yt=np.sin(xt[:, 0]))


def test_tp_mean_equals_gp_mean_and_dof(problem):
    p = problem
    g = nngp.gp.predict(nngp.gp.fit(p["K"], p["y"], 0.1), p["Kx"], p["kd"])
    post = nngp.tp.fit(p["K"], p["y"], 2.0, 3.0, 0.1)
    t = nngp.tp.predict(post, p["Kx"], p["kd"])
    np.testing.assert_array_equal(np.asarray(t.loc), np.asarray(g.loc))
    np.testing.assert_allclose(t.df, 2 * 2.0 + 30)
    # scale factor (2 beta + q) / (2 alpha + n) relative to the unit-scale GP
    q = float(post.gp.quad)
    np.testing.assert_allclose(t.scale**2, g.scale**2 * (6.0 + q) / (4.0 + 30), rtol=1e-6)


def test_scale_posterior_against_numerical_integration(problem):
    p = problem
    a, b = 2.0, 3.0
    post = nngp.tp.fit(p["K"], p["y"], a, b, 0.1)
    s2 = np.exp(np.linspace(-8, 6, 20001))
    with jax.enable_x64(True):
        lp = np.asarray(
            dist.InverseGamma(a, b).log_prob(jnp.asarray(s2))
            + nngp.mixtures.scale_log_likelihood(post.gp, jnp.asarray(s2))
        )
    w = np.exp(lp - lp.max()) * s2  # integrate in log sigma^2
    w /= w.sum()
    mean_num = np.sum(w * s2)
    mean_closed = float(post.beta / (post.alpha - 1))
    assert mean_num == pytest.approx(mean_closed, rel=1e-6)


def test_log_marginals_against_scipy(problem):
    p = problem
    with jax.enable_x64(True):
        K = np.asarray(p["K"]) + 0.1 * np.eye(30)
        y = np.asarray(p["y"])
        lt = float(nngp.tp.log_marginal(p["K"], p["y"], 2.5, 1.5, 0.1))
        ref = st.multivariate_t(loc=np.zeros(30), shape=1.5 / 2.5 * K, df=5.0).logpdf(y)
        assert lt == pytest.approx(ref, rel=1e-10)
        lg = float(nngp.gp.log_marginal(p["K"], p["y"], 0.7, 0.1))
        assert lg == pytest.approx(st.multivariate_normal(np.zeros(30), 0.7 * K).logpdf(y), 1e-10)


def test_large_alpha_beta_recovers_gp(problem):
    p = problem
    yt = jnp.asarray(p["yt"])[:, None]
    gaps = []
    with jax.enable_x64(True):  # predictives in float64 (t log-density with df ~ 1e6)
        g = nngp.gp.predict(nngp.gp.fit(p["K"], p["y"], 0.1), p["Kx"], p["kd"], scale=0.8)
        for a in (1e2, 1e4, 1e6):
            post = nngp.tp.fit(p["K"], p["y"], a, 0.8 * a, 0.1)
            t = nngp.tp.predict(post, p["Kx"], p["kd"])
            gaps.append(float(jnp.max(jnp.abs(_log_prob(t, yt) - _log_prob(g, yt)))))
    # the gap shrinks like 1/alpha
    assert gaps[1] < 0.05 * gaps[0] and gaps[2] < 0.05 * gaps[1] + 1e-6 and gaps[2] < 2e-3


def test_importance_sampling_converges_to_closed_form(problem):
    p = problem
    a, b = 2.0, 3.0
    gp = nngp.gp.fit(p["K"], p["y"], 0.1)
    exact = nngp.tp.predict(nngp.tp.fit(p["K"], p["y"], a, b, 0.1), p["Kx"], p["kd"])
    yt = jnp.asarray(p["yt"])[:, None]
    prior = dist.InverseGamma(a, b)
    post = nngp.mixtures.importance_posterior(gp, prior, jax.random.key(0), num_samples=4000)
    assert float(post.ess) > 0.5 * 4000
    mix = nngp.mixtures.predict(post, p["Kx"], p["kd"])
    diff = np.abs(np.asarray(_log_prob(mix, yt) - _log_prob(exact, yt)))
    assert diff.max() < 3e-2 and diff.mean() < 5e-3
    # posterior mean of sigma^2 against the closed-form IG posterior (MC tolerance)
    w = jnp.exp(post.log_weights)
    m = float(jnp.sum(w * post.sigma2))
    ig = dist.InverseGamma(a + 15.0, b + 0.5 * gp.quad)
    se = float(jnp.sqrt(ig.variance / post.ess))
    assert abs(m - float(ig.mean)) < 4.5 * se


def test_general_priors_and_discrete_mixture(problem):
    p = problem
    gp = nngp.gp.fit(p["K"], p["y"], 0.1)
    yt = jnp.asarray(p["yt"])[:, None]
    for prior in (
        nngp.BurrXII(2.0, 1.5),
        dist.LogNormal(0.0, 1.0),
        dist.TransformedDistribution(dist.HalfCauchy(1.0), dist.transforms.PowerTransform(2.0)),
        lambda s2: -2.0 * jnp.log(s2) - 1.0 / s2,  # unnormalised IG(1, 1)
    ):
        post = nngp.mixtures.importance_posterior(gp, prior, jax.random.key(2), num_samples=4000)
        assert float(post.ess) > 1000
        lp = _log_prob(nngp.mixtures.predict(post, p["Kx"], p["kd"]), yt)
        assert np.all(np.isfinite(np.asarray(lp)))
    # the prior as proposal (the reference code) is far less efficient than the Laplace fit
    post_prior = nngp.mixtures.importance_posterior(
        gp, nngp.BurrXII(2.0, 1.5), jax.random.key(1), num_samples=4000, proposal="prior"
    )
    assert float(post_prior.ess) < 0.5 * 1000
    # finite discrete prior: exact weights
    vals = jnp.array([0.1, 1.0, 10.0])
    probs = jnp.array([0.2, 0.5, 0.3])
    post = nngp.mixtures.importance_posterior(gp, nngp.DiscreteScalePrior(vals, probs), None)
    with jax.enable_x64(True):
        lw = jnp.log(probs) + jnp.array(
            [nngp.gp.log_marginal(p["K"], p["y"], float(v), 0.1) for v in vals]
        )
        np.testing.assert_allclose(post.log_weights, lw - jax.scipy.special.logsumexp(lw), 1e-6)


def test_burr12_matches_scipy():
    c, d = 2.0, 1.5
    x = np.array([0.1, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(
        nngp.BurrXII(c, d).log_prob(jnp.asarray(x)), st.burr12(c, d).logpdf(x), rtol=1e-5
    )
    s = np.asarray(nngp.BurrXII(c, d).sample(jax.random.key(0), (20000,)))
    assert st.kstest(s, st.burr12(c, d).cdf).pvalue > 1e-3


def test_hyperparameter_fit_improves_evidence(problem):
    p = problem
    K = jnp.asarray(p["K"], jnp.float32)
    y = jnp.asarray(p["y"], jnp.float32)
    params, losses = nngp.tp.fit_hyperparameters(K, y, num_steps=300, learning_rate=3e-2)
    assert np.all(np.isfinite(np.asarray(losses)))
    assert float(losses[-1]) < float(losses[0]) - 0.05
    lm = nngp.tp.log_marginal(K, y, params["alpha"], params["beta"], params["eta"])
    assert float(-lm / 30) == pytest.approx(float(losses[-1]), abs=1e-2)


def test_gd_ensemble_moments(problem):
    p = problem
    gp = nngp.gp.fit(p["K"], p["y"], 1e-6)
    g = nngp.gp.predict(gp, p["Kx"], p["kd"], include_noise=False)
    mean, var = nngp.ensemble.moments(p["K"], p["Kx"], p["kd"], p["y"], "nngp")
    np.testing.assert_allclose(mean, g.loc, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jnp.sqrt(var)[:, None], g.scale, rtol=1e-6, atol=1e-8)
    # NTK mode with Theta = K reduces to the NNGP case
    m2, v2 = nngp.ensemble.moments(
        p["K"], p["Kx"], p["kd"], p["y"], "ntk", ntk_train=p["K"], ntk_test_train=p["Kx"]
    )
    np.testing.assert_allclose(m2, mean, rtol=1e-6, atol=1e-8)
    # equal up to the O(eta) difference in where the regulariser enters
    np.testing.assert_allclose(v2, var, rtol=1e-3, atol=5e-4)
    # real NTK: training points interpolated, variance non-negative; t with 2 alpha dof
    t = nngp.ensemble.predict(p["K"], p["Kx"], p["kd"], p["y"], 3.0, 2.0, "ntk", p["T"], p["Tx"])
    np.testing.assert_allclose(t.df, 6.0)
    assert np.all(np.asarray(t.scale) >= 0)
    mt, _ = nngp.ensemble.moments(
        p["K"], p["K"], np.diag(np.asarray(p["K"])), p["y"], "ntk", p["T"], p["T"]
    )
    np.testing.assert_allclose(mt[:, 0], p["y"], atol=5e-3)  # eta-regularised
    tp = nngp.ensemble.predict(p["K"], p["Kx"], p["kd"], p["y"], 3.0, 2.0, posterior=True)
    np.testing.assert_allclose(tp.df, 6.0 + 30)


def test_gaussian_classifier_same_accuracy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    labels = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    xt = rng.normal(size=(20, 4))
    arch = stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(), stax.Dense(1, 1.0, None))
    ((K, Kx, kd),) = _kernels(arch, x, xt, get=("nngp",))
    g = nngp.classification.predict(K, jnp.asarray(labels), Kx, kd, 3, model="gp")
    t = nngp.classification.predict(K, jnp.asarray(labels), Kx, kd, 3, model="t")
    np.testing.assert_array_equal(g.mean.argmax(-1), t.mean.argmax(-1))
    np.testing.assert_allclose(t.df, 4.0 + 60 * 3)


def test_bad_inputs(problem):
    p = problem
    with pytest.raises(ValueError, match="eta"):
        nngp.gp.fit(p["K"], p["y"], eta=0.0)
    with pytest.raises(ValueError, match="y"):
        nngp.gp.fit(p["K"], p["y"][:5])
    with pytest.raises(ValueError, match="k_train"):
        nngp.gp.fit(p["K"][:3], p["y"])
    with pytest.raises(ValueError, match="NaN"):
        nngp.gp.fit(p["K"].at[0, 0].set(jnp.nan), p["y"])
    with pytest.raises(ValueError, match="alpha"):
        nngp.tp.fit(p["K"], p["y"], -1.0, 1.0)
    with pytest.raises(ValueError, match="k_train is not positive semi-definite"):
        nngp.gp.fit(-jnp.eye(p["K"].shape[0]), p["y"])
    gp = nngp.gp.fit(p["K"], p["y"], 0.1)
    with pytest.raises(ValueError, match="k_test_train"):
        nngp.gp.predict(gp, p["Kx"][:, :4], p["kd"])
    with pytest.raises(ValueError, match="prior"):
        nngp.mixtures.importance_posterior(gp, 3.0, jax.random.key(0))
    with pytest.raises(ValueError, match="proposal"):
        nngp.mixtures.importance_posterior(
            gp, dist.LogNormal(0.0, 1.0), jax.random.key(0), proposal="x"
        )
    with pytest.raises(ValueError, match="mode"):
        nngp.ensemble.moments(p["K"], p["Kx"], p["kd"], p["y"], mode="cnn")
    with pytest.raises(ValueError, match="labels"):
        nngp.classification.one_hot(jnp.ones(3), 2)


def test_public_names_documented():
    for name in nngp.__all__:
        assert inspect.getdoc(getattr(nngp, name)), name


def test_log_marginals_reject_bad_input(problem):
    """Issue 17: a non-PSD kernel or a non-positive parameter raises (eager), NaN under jit."""
    p = problem
    K, y = p["K"], p["y"]
    Kn = np.asarray(K)
    not_psd = jnp.asarray(Kn - 2.0 * np.linalg.eigvalsh(Kn).max() * np.eye(Kn.shape[0]))
    with pytest.raises(ValueError, match="k_train \\+ eta I is not positive definite"):
        nngp.gp.log_marginal(not_psd, y, 1.0, 0.1)
    with pytest.raises(ValueError, match="k_train \\+ eta I is not positive definite"):
        nngp.tp.log_marginal(not_psd, y, 2.0, 1.0, 0.1)
    for kwargs, name in (
        (dict(alpha=0.0, beta=1.0), "alpha"),
        (dict(alpha=2.0, beta=-1.0), "beta"),
        (dict(alpha=2.0, beta=1.0, eta=0.0), "eta"),
        (dict(alpha=jnp.nan, beta=1.0), "alpha"),
    ):
        with pytest.raises(ValueError, match=name):
            nngp.tp.log_marginal(K, y, **kwargs)
    with pytest.raises(ValueError, match="scale"):
        nngp.gp.log_marginal(K, y, -1.0, 0.1)
    with pytest.raises(ValueError, match="k_train"):
        nngp.gp.log_marginal(K.at[0, 1].set(jnp.inf), y, 1.0, 0.1)
    # traced arguments cannot be checked: the documented result is NaN
    traced = jax.jit(nngp.tp.log_marginal)(not_psd, y, 2.0, 1.0, 0.1)
    assert np.isnan(float(traced))


def test_predict_rejects_negative_test_variances(problem):
    """Issue 17: negative or inconsistent test variances raise instead of being clipped."""
    p = problem
    post = nngp.tp.fit(p["K"], p["y"], 2.0, 3.0, 0.1)
    with pytest.raises(ValueError, match="k_test_diag must be non-negative"):
        nngp.tp.predict(post, p["Kx"], p["kd"].at[2].set(-0.5))
    with pytest.raises(ValueError, match="k_test_diag must be non-negative"):
        nngp.ensemble.moments(p["K"], p["Kx"], p["kd"].at[0].set(-1.0), p["y"])
    # a test variance far below what k_test_train explains: the joint matrix is not PSD
    with pytest.raises(ValueError, match="not positive semi-definite"):
        nngp.gp.predict(post.gp, p["Kx"], 1e-3 * p["kd"])
