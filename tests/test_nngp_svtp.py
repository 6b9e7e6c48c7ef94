"""Sparse variational Student-t process classification (bayesnn.nngp.svtp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st
from threadpoolctl import threadpool_limits

from bayesnn.nn import kernels, stax
from bayesnn.nn.kernels import kernel_fn
from bayesnn.nngp import svtp


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread():
    """OpenBLAS threads spin on a loaded 2-core machine (a 500 x 500 Cholesky: 0.5 s instead
    of 0.006 s); one thread for this module's LAPACK calls, restored afterwards."""
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def kl_setup():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 2))
    arch = stax.serial(stax.Dense(1, 1.5, 0.3), stax.Relu(), stax.Dense(1, 1.0, None))
    with jax.enable_x64(True):
        kzz = np.asarray(kernel_fn(arch, jnp.asarray(z), get="nngp"))
    kzz = kzz + 1e-3 * np.eye(5)
    params = svtp.VariationalParams(
        jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        jnp.asarray(0.3 * rng.normal(size=(5, 3)) - 0.5, jnp.float32),
        jnp.log(jnp.asarray(3.5, jnp.float32)),
        jnp.log(jnp.asarray(1.7, jnp.float32)),
    )
    return kzz, params


def _log_normal(u, cov):
    """log N(u; 0, cov) for u (S, M) and cov (S, M, M) in float64."""
    L = np.linalg.cholesky(cov)
    a = np.linalg.solve(L, u[..., None])[..., 0]
    return (
        -0.5 * np.sum(a * a, -1)
        - np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), -1)
        - (0.5 * u.shape[-1] * np.log(2 * np.pi))
    )


def test_kl_against_monte_carlo(kl_setup):
    """Closed-form KL(q(sigma^2, u) || p(sigma^2, u)) vs a Monte Carlo estimate (float64)."""
    kzz, params = kl_setup
    alpha, beta = 2.0, 1.2
    L = jnp.asarray(np.linalg.cholesky(kzz), jnp.float32)
    kl = float(svtp.kl(params, L, alpha, beta))
    m = np.asarray(params.mean, np.float64)
    s = np.exp(np.asarray(params.log_sd, np.float64))
    aq, bq = float(jnp.exp(params.log_alpha)), float(jnp.exp(params.log_beta))
    rng = np.random.default_rng(1)
    n = 20000
    s2 = st.invgamma(aq, scale=bq).rvs(n, random_state=rng)
    lq = st.invgamma(aq, scale=bq).logpdf(s2)
    lp = st.invgamma(alpha, scale=beta).logpdf(s2)
    for c in range(3):
        u = m[:, c] + np.sqrt(s2)[:, None] * s[:, c] * rng.normal(size=(n, 5))
        lq = lq + np.sum(st.norm(m[:, c], np.sqrt(s2)[:, None] * s[:, c]).logpdf(u), -1)
        lp = lp + _log_normal(u, s2[:, None, None] * kzz[None])
    d = lq - lp
    se = d.std() / np.sqrt(n)
    assert abs(kl - d.mean()) < 4.5 * se + 1e-4 * abs(kl), (kl, d.mean(), se)
    # the inverse-gamma part alone, against numerical integration
    x = np.exp(np.linspace(-8, 8, 40001))
    q, p = st.invgamma(aq, scale=bq), st.invgamma(alpha, scale=beta)
    integrand = q.pdf(x) * (q.logpdf(x) - p.logpdf(x)) * x  # d log x
    ref = np.sum(integrand) * (np.log(x[1]) - np.log(x[0]))
    assert float(svtp.ig_kl(aq, bq, alpha, beta)) == pytest.approx(ref, rel=1e-4)
    assert float(svtp.ig_kl(alpha, beta, alpha, beta)) == pytest.approx(0.0, abs=1e-5)
    assert sp.gammaln(1.0) == 0.0  # scipy is the independent reference above


def test_gp_kl_closed_form(kl_setup):
    """model='gp': the Gaussian KL at fixed sigma^2 against the dense formula."""
    kzz, params = kl_setup
    scale = 0.7
    L = jnp.asarray(np.linalg.cholesky(kzz), jnp.float32)
    kl = float(svtp.kl(params, L, 2.0, 2.0, model="gp", scale=scale))
    kinv = np.linalg.inv(kzz)
    ref = 0.0
    for c in range(3):
        S = np.diag(np.exp(2 * np.asarray(params.log_sd[:, c], np.float64)))
        mc = np.asarray(params.mean[:, c], np.float64)
        ref += 0.5 * (
            np.trace(kinv @ S)
            + mc @ kinv @ mc / scale
            - 5
            + np.linalg.slogdet(kzz)[1]
            - np.linalg.slogdet(S)[1]
        )
    assert kl == pytest.approx(ref, rel=1e-4)


def test_svtp_fits_three_classes():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 2.0], [-1.8, -1.0], [1.8, -1.0]])
    lab = rng.integers(0, 3, 240)
    x = (centers[lab] + 0.9 * rng.normal(size=(240, 2))).astype(np.float32)
    xtr, ytr, yte = x[:150], lab[:150], lab[150:]
    arch = stax.serial(stax.Dense(1, 1.5, 0.2), stax.Relu(), stax.Dense(1, 1.0, None))
    z_idx = np.asarray(svtp.inducing_points(jax.random.key(0), ytr, 12))
    assert len(np.unique(z_idx)) == 12 and set(np.unique(ytr[z_idx])) == {0, 1, 2}
    kxz = kernel_fn(arch, jnp.asarray(x), jnp.asarray(xtr[z_idx]), get="nngp")
    kd = jnp.diagonal(kernel_fn(arch, jnp.asarray(x), get="nngp"))
    kzz = kernel_fn(arch, jnp.asarray(xtr[z_idx]), get="nngp")
    kern = svtp.prepare_kernels(kzz, kxz[:150], kd[:150])
    config = svtp.TrainConfig(num_steps=300, batch_size=50, learning_rate=0.05)
    params, losses = svtp.fit(kern, jnp.asarray(ytr), 3, jax.random.key(1), config=config)
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses)) and losses[-20:].mean() < 0.2 * losses[:20].mean()
    p = svtp.predict(params, kern.chol_zz, kxz[150:], kd[150:], jax.random.key(2), 500)
    np.testing.assert_allclose(np.asarray(p.sum(-1)), 1.0, rtol=1e-5)
    acc = float(jnp.mean(p.argmax(-1) == jnp.asarray(yte)))
    nll = -float(jnp.mean(jnp.log(p[jnp.arange(90), jnp.asarray(yte)])))
    assert acc > 0.8 and nll < 0.5 * np.log(3.0), (acc, nll)  # chance: 1/3 and log 3
    assert float(jnp.exp(params.log_alpha)) > 0 and float(jnp.exp(params.log_beta)) > 0


def test_bad_inputs(kl_setup):
    kzz, _ = kl_setup
    kxz = jnp.ones((4, 5))
    with pytest.raises(ValueError, match="k_xz"):
        svtp.prepare_kernels(kzz, jnp.ones((4, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="positive definite"):
        svtp.prepare_kernels(-jnp.eye(5), kxz, jnp.ones(4), jitter=0.0)
    kern = svtp.prepare_kernels(kzz, kxz, jnp.ones(4))
    with pytest.raises(ValueError, match="model"):
        svtp.fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), model="x")
    with pytest.raises(ValueError, match="labels"):
        svtp.fit(kern, jnp.zeros(3, jnp.int32), 2, jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        config = svtp.TrainConfig(batch_size=10)
        svtp.fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), config=config)
    with pytest.raises(ValueError, match="alpha"):
        svtp.fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), alpha=0.0)
    with pytest.raises(ValueError, match="num_inducing"):
        svtp.inducing_points(jax.random.key(0), np.zeros(4, int), 5)
    x, lab = jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)
    fit = svtp.fit_hyperparameters
    with pytest.raises(ValueError, match="kernel_init"):
        fit(_relu_builder, {"W_std": -1.0}, x, x[:2], lab, 2, jax.random.key(0))
    with pytest.raises(ValueError, match="kernel_init"):
        fit(_relu_builder, {}, x, x[:2], lab, 2, jax.random.key(0))
    with pytest.raises(ValueError, match="z"):
        fit(_relu_builder, {"W_std": 1.0}, x, jnp.ones((2, 3)), lab, 2, jax.random.key(0))
    with pytest.raises(ValueError, match="warmup_steps"):
        fit(_relu_builder, {"W_std": 1.0}, x, x[:2], lab, 2, jax.random.key(0),
            learning=svtp.KernelLearning(warmup_steps=6),
            config=svtp.TrainConfig(num_steps=5, batch_size=4))  # fmt: skip


def _relu_builder(h):
    """ReLU NNGP with a learnable first-layer W_std (b_std 0.1, unit readout)."""
    d1 = kernels.dense_kernel(h["W_std"], 0.1, "ntk")
    act = kernels.activation_kernel("relu", jax.nn.relu)
    out = kernels.dense_kernel(1.0, None, "ntk")
    return lambda k: out(act(d1(k)))


def test_svtp_learns_kernel_hyperparameters():
    """Labels from softmax(f), f ~ GP(0, Kbar_{W=2}); start at W = 2/3 with q(sigma^2) and
    the prior IG(20, 19) (E sigma^2 = 1). Learning W raises the ELBO and lands near 2;
    learning the prior moves it towards q(sigma^2). One compiled program for all runs."""
    rng = np.random.default_rng(0)
    n, c, w_true = 200, 3, 2.0
    x = rng.normal(size=(n, 2)).astype(np.float32)
    with jax.enable_x64(True):
        k = np.asarray(kernel_fn(_relu_builder({"W_std": w_true}), jnp.asarray(x, jnp.float64)))
    f = np.linalg.cholesky(k[0] + 1e-8 * np.eye(n)) @ rng.normal(size=(n, c))
    p = np.exp(f - f.max(1, keepdims=True))
    y = np.array([rng.choice(c, p=pi / pi.sum()) for pi in p], np.int32)
    z = jnp.asarray(x)[np.asarray(svtp.inducing_points(jax.random.key(0), y, 16))]

    def fit(learn_kernel, learn_prior):
        q, h, losses = svtp.fit_hyperparameters(
            _relu_builder, {"W_std": w_true / 3}, jnp.asarray(x), z, jnp.asarray(y), c,
            jax.random.key(1), alpha=20.0, beta=19.0,
            learning=svtp.KernelLearning(learn_prior=learn_prior, learn_kernel=learn_kernel),
            config=svtp.TrainConfig(num_steps=1000, learning_rate=0.05),
        )  # fmt: skip
        return q, h, float(np.mean(np.asarray(losses)[-100:]))  # -ELBO per point

    _, h0, l0 = fit(False, False)
    _, h1, l1 = fit(True, False)
    q2, h2, l2 = fit(True, True)
    assert float(h0["kernel"]["W_std"]) == pytest.approx(w_true / 3, rel=1e-6)
    w = float(h1["kernel"]["W_std"])
    assert abs(np.log(w / w_true)) < np.log(1.5), w  # started log(3) away
    assert l1 < l0 - 0.02, (l0, l1)  # measured gap 0.07 nats per point
    assert float(h1["alpha"]) == 20.0 and float(h1["beta"]) == 19.0
    aq, bq = float(jnp.exp(q2.log_alpha)), float(jnp.exp(q2.log_beta))
    kl_before = float(svtp.ig_kl(aq, bq, 20.0, 19.0))
    kl_after = float(svtp.ig_kl(aq, bq, float(h2["alpha"]), float(h2["beta"])))
    assert kl_after < 0.5 * kl_before and l2 < l0 - 0.02, (kl_before, kl_after, l2)
