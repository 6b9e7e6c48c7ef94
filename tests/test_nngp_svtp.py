"""Sparse variational Student-t process classification (bayesnn.nngp.svtp)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sp
import scipy.stats as st

from bayesnn.nn import stax
from bayesnn.nn.kernels import kernel_fn
from bayesnn.nngp import svtp


@pytest.fixture(scope="module")
def kl_setup():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 2))
    arch = stax.serial(stax.Dense(1, 1.5, 0.3), stax.Relu(), stax.Dense(1, 1.0, None))
    with jax.enable_x64(True):
        kzz = np.asarray(kernel_fn(arch, jnp.asarray(z), get="nngp"))
    kzz = kzz + 1e-3 * np.eye(5)
    params = svtp.SVTPParams(
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
    kl = float(svtp.svtp_kl(params, L, alpha, beta))
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
    kl = float(svtp.svtp_kl(params, L, 2.0, 2.0, model="gp", scale=scale))
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
    kern = svtp.svtp_kernels(kzz, kxz[:150], kd[:150])
    params, losses = svtp.svtp_fit(
        kern, jnp.asarray(ytr), 3, jax.random.key(1), num_steps=300, batch_size=50,
        learning_rate=0.05,
    )  # fmt: skip
    losses = np.asarray(losses)
    assert np.all(np.isfinite(losses)) and losses[-20:].mean() < 0.2 * losses[:20].mean()
    p = svtp.svtp_predict(params, kern.chol_zz, kxz[150:], kd[150:], jax.random.key(2), 500)
    np.testing.assert_allclose(np.asarray(p.sum(-1)), 1.0, rtol=1e-5)
    acc = float(jnp.mean(p.argmax(-1) == jnp.asarray(yte)))
    nll = -float(jnp.mean(jnp.log(p[jnp.arange(90), jnp.asarray(yte)])))
    assert acc > 0.8 and nll < 0.5 * np.log(3.0), (acc, nll)  # chance: 1/3 and log 3
    assert float(jnp.exp(params.log_alpha)) > 0 and float(jnp.exp(params.log_beta)) > 0


def test_bad_inputs(kl_setup):
    kzz, _ = kl_setup
    kxz = jnp.ones((4, 5))
    with pytest.raises(ValueError, match="k_xz"):
        svtp.svtp_kernels(kzz, jnp.ones((4, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="positive definite"):
        svtp.svtp_kernels(-jnp.eye(5), kxz, jnp.ones(4), jitter=0.0)
    kern = svtp.svtp_kernels(kzz, kxz, jnp.ones(4))
    with pytest.raises(ValueError, match="model"):
        svtp.svtp_fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), model="x")
    with pytest.raises(ValueError, match="labels"):
        svtp.svtp_fit(kern, jnp.zeros(3, jnp.int32), 2, jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        svtp.svtp_fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), batch_size=10)
    with pytest.raises(ValueError, match="alpha"):
        svtp.svtp_fit(kern, jnp.zeros(4, jnp.int32), 2, jax.random.key(0), alpha=0.0)
    with pytest.raises(ValueError, match="num_inducing"):
        svtp.inducing_points(jax.random.key(0), np.zeros(4, int), 5)
