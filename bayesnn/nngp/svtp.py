"""Sparse variational Student-t process (SVTP) classification with a softmax likelihood.

Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR 2022
(appendix; reference code ``spax/models.py: SVSP``). With ``Kbar`` the NNGP kernel at unit
readout scale, the prior is ``sigma^2 ~ IG(alpha, beta)``, ``f_c | sigma^2 ~ GP(0, sigma^2
Kbar)`` for each of ``C`` classes, ``y ~ Categorical(softmax(f))``. With ``M`` inducing
inputs ``Z`` (``u_c = f_c(Z)``) the variational family is

.. math::

    q(\\sigma^2) = \\mathrm{IG}(\\tilde\\alpha, \\tilde\\beta), \\qquad
    q(u_c \\mid \\sigma^2) = N(m_c, \\sigma^2 S_c), \\quad S_c \\text{ diagonal},

so that ``q(f_c(x) | sigma^2) = N(A m_c, sigma^2 (A S_c A^T + Kbar_xx - A Kbar_Zx))`` with
``A = Kbar_xZ Kbar_ZZ^{-1}``, a Student-t with ``2 alpha~`` dof after integrating
``sigma^2``. The ELBO is ``sum_i E_q[log softmax_{y_i}(f(x_i))] - KL`` with

.. math::

    \\mathrm{KL} = \\tfrac12\\Big[C\\log|K_{ZZ}| - \\sum_c \\log|S_c| - MC
    + \\sum_c \\mathrm{tr}(K_{ZZ}^{-1} S_c)
    + \\tfrac{\\tilde\\alpha}{\\tilde\\beta} \\sum_c m_c^T K_{ZZ}^{-1} m_c\\Big]
    + \\mathrm{KL}(\\mathrm{IG}(\\tilde\\alpha, \\tilde\\beta) \\,\\|\\, \\mathrm{IG}(\\alpha, \\beta)),

    \\mathrm{KL}(\\mathrm{IG}\\|\\mathrm{IG}) = \\alpha\\log\\tfrac{\\tilde\\beta}{\\beta}
    - \\log\\Gamma(\\tilde\\alpha) + \\log\\Gamma(\\alpha) + (\\tilde\\alpha - \\alpha)
    \\psi(\\tilde\\alpha) + (\\beta - \\tilde\\beta)\\tfrac{\\tilde\\alpha}{\\tilde\\beta}.

The expected log-likelihood is a Monte Carlo average over reparameterised draws of
``sigma^2`` (implicit gamma gradients) and of the marginals ``f_c(x_i)``, estimated on
minibatches; Adam (optax) maximises the ELBO. ``model="gp"`` gives the SVGP baseline
(``sigma^2`` fixed at ``scale``, no IG term). The kernel matrices are computed once from a
fixed architecture (rows indexed per minibatch).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn.nngp.regression import _check_matrix, _positive

__all__ = [
    "SVTPParams",
    "SVTPKernels",
    "svtp_kernels",
    "svtp_init",
    "svtp_kl",
    "ig_kl",
    "svtp_elbo",
    "svtp_fit",
    "svtp_predict",
    "inducing_points",
]


class SVTPParams(NamedTuple):
    """Variational parameters (unconstrained).

    Attributes
    ----------
    mean
        ``(M, C)`` means ``m_c`` of ``u_c``.
    log_sd
        ``(M, C)`` log square roots of the diagonal ``S_c``.
    log_alpha, log_beta
        Logs of ``alpha~``, ``beta~`` of ``q(sigma^2)`` (unused when ``model="gp"``).
    """

    mean: jax.Array
    log_sd: jax.Array
    log_alpha: jax.Array
    log_beta: jax.Array


class SVTPKernels(NamedTuple):
    """Fixed kernel blocks of the training set.

    Attributes
    ----------
    chol_zz
        Lower Cholesky factor of ``Kbar(Z, Z) + jitter I``, ``(M, M)``.
    k_xz
        ``(N, M)`` cross-covariances ``Kbar(X, Z)``.
    k_xx
        ``(N,)`` variances ``Kbar(x, x)``.
    """

    chol_zz: jax.Array
    k_xz: jax.Array
    k_xx: jax.Array


def svtp_kernels(k_zz, k_xz, k_xx, jitter: float = 1e-6) -> SVTPKernels:
    """Validate the kernel blocks and factorise ``K_ZZ + jitter * mean(diag) I``."""
    k_zz = _check_matrix("k_zz", k_zz, square=True)
    k_xz = _check_matrix("k_xz", k_xz)
    k_xx = jnp.asarray(k_xx)
    if k_xz.shape[1] != k_zz.shape[0] or k_xx.shape != (k_xz.shape[0],):
        raise ValueError(
            f"k_xz must be (N, {k_zz.shape[0]}) and k_xx (N,), got {k_xz.shape}, {k_xx.shape}"
        )
    m = k_zz.shape[0]
    scale = jnp.mean(jnp.diagonal(k_zz))
    L = jnp.linalg.cholesky(0.5 * (k_zz + k_zz.T) + jitter * scale * jnp.eye(m, dtype=k_zz.dtype))
    if not bool(jnp.all(jnp.isfinite(L))):
        raise ValueError("k_zz is not positive definite; increase jitter or thin Z")
    return SVTPKernels(L, k_xz, k_xx)


def inducing_points(rng_key, labels, num_inducing: int) -> jax.Array:
    """Indices of ``num_inducing`` training points drawn without replacement in class
    proportion (the reference code's choice of ``Z``)."""
    labels = np.asarray(labels)
    if not 0 < num_inducing <= labels.shape[0]:
        raise ValueError(f"num_inducing must be in 1..{labels.shape[0]}, got {num_inducing!r}")
    classes, counts = np.unique(labels, return_counts=True)
    per = np.floor(counts / counts.sum() * num_inducing).astype(int)
    per[np.argsort(-counts)[: num_inducing - per.sum()]] += 1
    perm = np.asarray(jax.random.permutation(rng_key, labels.shape[0]))
    idx = [perm[labels[perm] == c][:k] for c, k in zip(classes, per, strict=True)]
    return jnp.asarray(np.sort(np.concatenate(idx)))


def svtp_init(num_inducing: int, num_classes: int, alpha=2.0, beta=2.0) -> SVTPParams:
    """Zero means, unit ``S_c`` and ``q(sigma^2)`` at the prior ``IG(alpha, beta)``."""
    return SVTPParams(
        jnp.zeros((num_inducing, num_classes)),
        jnp.zeros((num_inducing, num_classes)),
        jnp.log(jnp.asarray(alpha, jnp.float32)),
        jnp.log(jnp.asarray(beta, jnp.float32)),
    )


def ig_kl(alpha_q, beta_q, alpha_p, beta_p) -> jax.Array:
    """``KL(IG(alpha_q, beta_q) || IG(alpha_p, beta_p))`` in closed form."""
    return (
        alpha_p * jnp.log(beta_q / beta_p)
        - jax.scipy.special.gammaln(alpha_q)
        + jax.scipy.special.gammaln(alpha_p)
        + (alpha_q - alpha_p) * jax.scipy.special.digamma(alpha_q)
        + (beta_p - beta_q) * alpha_q / beta_q
    )


def svtp_kl(params: SVTPParams, chol_zz, alpha, beta, model: str = "t", scale=1.0):
    """``KL(q(sigma^2, u) || p(sigma^2, u))`` (module formula; ``model="gp"``: fixed
    ``sigma^2 = scale``, Gaussian KL only)."""
    m, c = params.mean.shape
    s2 = jnp.exp(2.0 * params.log_sd)
    logdet_k = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_zz)))
    linv = jax.scipy.linalg.solve_triangular(chol_zz, jnp.eye(m, dtype=chol_zz.dtype), lower=True)
    kinv_diag = jnp.sum(linv * linv, axis=0)
    a = jax.scipy.linalg.solve_triangular(chol_zz, params.mean, lower=True)
    if model == "t":
        aq, bq = jnp.exp(params.log_alpha), jnp.exp(params.log_beta)
        inv_s2 = aq / bq
    else:
        inv_s2 = 1.0 / scale
    gauss = 0.5 * (
        c * logdet_k
        - jnp.sum(jnp.log(s2))
        - m * c
        + jnp.sum(kinv_diag[:, None] * s2)
        + inv_s2 * jnp.sum(a * a)
    )
    if model == "t":
        return gauss + ig_kl(aq, bq, alpha, beta)
    return gauss


def _marginals(params: SVTPParams, chol_zz, k_bz, k_bb):
    """Means ``(B, C)`` and variances ``(B, C)`` of ``q(f | sigma^2 = 1)``."""
    A = jax.scipy.linalg.cho_solve((chol_zz, True), k_bz.T).T  # (B, M)
    mean = A @ params.mean
    q_diag = jnp.sum(A * k_bz, axis=1)
    var = (k_bb - q_diag)[:, None] + (A * A) @ jnp.exp(2.0 * params.log_sd)
    return mean, jnp.maximum(var, 1e-12)


def _sigma2_draws(params, rng_key, num_samples, model, scale):
    if model == "gp":
        return jnp.full((num_samples,), scale, jnp.float32)
    g = jax.random.gamma(rng_key, jnp.exp(params.log_alpha), (num_samples,))
    return jnp.exp(params.log_beta) / g


def svtp_elbo(
    params: SVTPParams,
    rng_key,
    kernels: SVTPKernels,
    idx,
    labels,
    alpha,
    beta,
    num_samples: int = 16,
    model: str = "t",
    scale=1.0,
):
    """Minibatch ELBO estimate ``N/B sum_{i in batch} E_q[log softmax_{y_i} f(x_i)] - KL``.

    ``idx`` are the minibatch rows of ``kernels.k_xz``; ``labels`` their classes.
    """
    k_sig, k_f = jax.random.split(rng_key)
    k_bz, k_bb = kernels.k_xz[idx], kernels.k_xx[idx]
    mean, var = _marginals(params, kernels.chol_zz, k_bz, k_bb)
    s2 = _sigma2_draws(params, k_sig, num_samples, model, scale)
    eps = jax.random.normal(k_f, (num_samples,) + mean.shape, mean.dtype)
    f = mean[None] + jnp.sqrt(s2[:, None, None] * var[None]) * eps
    logp = jax.nn.log_softmax(f, axis=-1)
    ll = jnp.take_along_axis(logp, labels[None, :, None], axis=-1)[..., 0]
    n = kernels.k_xz.shape[0]
    return n * jnp.mean(ll) - svtp_kl(params, kernels.chol_zz, alpha, beta, model, scale)


@functools.partial(
    jax.jit, static_argnames=("num_steps", "batch_size", "num_samples", "model", "optimizer")
)
def _fit_run(
    params,
    rng_key,
    kernels,
    labels,
    alpha,
    beta,
    scale,
    num_steps,
    batch_size,
    num_samples,
    model,
    optimizer,
):
    n = labels.shape[0]

    def loss(p, key, idx):
        elbo = svtp_elbo(p, key, kernels, idx, labels[idx], alpha, beta, num_samples, model, scale)
        return -elbo / n

    def step(carry, key):
        p, s = carry
        k_idx, k_mc = jax.random.split(key)
        idx = jax.random.choice(k_idx, n, (batch_size,), replace=False)
        v, g = jax.value_and_grad(loss)(p, k_mc, idx)
        u, s = optimizer.update(g, s, p)
        return (optax.apply_updates(p, u), s), v

    keys = jax.random.split(rng_key, num_steps)
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), keys)
    return params, losses


def svtp_fit(
    kernels: SVTPKernels,
    labels,
    num_classes: int,
    rng_key,
    alpha: float = 2.0,
    beta: float = 2.0,
    num_steps: int = 1000,
    batch_size: int = 100,
    num_samples: int = 16,
    learning_rate: float = 1e-2,
    model: str = "t",
    scale: float = 1.0,
):
    """Maximise the SVTP (or SVGP, ``model="gp"``) ELBO with Adam.

    Parameters
    ----------
    kernels
        From :func:`svtp_kernels` (training rows).
    labels
        ``(N,)`` integer classes.
    num_classes
        ``C``.
    rng_key
        PRNG key (minibatches and Monte Carlo draws).
    alpha, beta
        Prior ``IG(alpha, beta)`` on ``sigma^2``.
    num_steps, batch_size, num_samples, learning_rate
        Adam steps, minibatch size, Monte Carlo draws per step, step size.
    model
        ``"t"`` (SVTP) or ``"gp"`` (SVGP with ``sigma^2 = scale``).

    Returns
    -------
    tuple
        ``(params, losses)``: :class:`SVTPParams` and the negative ELBO per point per step.
    """
    if model not in ("t", "gp"):
        raise ValueError(f"model must be 't' or 'gp', got {model!r}")
    alpha, beta, scale = (
        _positive("alpha", alpha),
        _positive("beta", beta),
        _positive("scale", scale),
    )
    labels = jnp.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != kernels.k_xz.shape[0]:
        raise ValueError(f"labels must be ({kernels.k_xz.shape[0]},), got {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if not isinstance(batch_size, int) or not 0 < batch_size <= labels.shape[0]:
        raise ValueError(f"batch_size must be in 1..{labels.shape[0]}, got {batch_size!r}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    params = svtp_init(kernels.chol_zz.shape[0], num_classes, alpha, beta)
    return _fit_run(
        params,
        rng_key,
        kernels,
        labels,
        alpha,
        beta,
        scale,
        num_steps,
        batch_size,
        num_samples,
        model,
        optax.adam(learning_rate),
    )


@functools.partial(jax.jit, static_argnames=("num_samples", "model"))
def svtp_predict(
    params: SVTPParams,
    chol_zz,
    k_test_z,
    k_test_diag,
    rng_key,
    num_samples: int = 1000,
    model: str = "t",
    scale: float = 1.0,
) -> jax.Array:
    """Predictive class probabilities ``(1/S) sum_s softmax(f_s(x*))``, shape ``(m, C)``.

    ``f_s`` are joint draws of ``sigma^2 ~ q`` and the marginals of ``q(f(x*) | sigma^2)``
    (a Student-t with ``2 alpha~`` dof per point for ``model="t"``).
    """
    k_sig, k_f = jax.random.split(rng_key)
    mean, var = _marginals(params, chol_zz, k_test_z, k_test_diag)
    s2 = _sigma2_draws(params, k_sig, num_samples, model, scale)
    eps = jax.random.normal(k_f, (num_samples,) + mean.shape, mean.dtype)
    f = mean[None] + jnp.sqrt(s2[:, None, None] * var[None]) * eps
    return jnp.mean(jax.nn.softmax(f, axis=-1), axis=0)
