"""Sparse variational Student-t process (SVTP) classification with a softmax likelihood.

Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR 2022
(appendix; the authors' ``spax`` code, ``models.py: SVSP``). With ``Kbar`` the NNGP kernel at unit
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
(``sigma^2`` fixed at ``scale``, no IG term). :func:`fit` takes kernel matrices computed
once from a fixed architecture (rows indexed per minibatch); :func:`fit_hyperparameters`
recomputes them at every step, so that the kernel hyperparameters (``W_std``, ``b_std``)
and the prior ``IG(alpha, beta)`` are learned with the same ELBO.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bayesnn._linalg import cholesky_relative_jitter
from bayesnn._training import minimize
from bayesnn.nn.kernels import input_kernel
from bayesnn.nngp._common import check_matrix, positive

__all__ = [
    "VariationalParams",
    "KernelBlocks",
    "prepare_kernels",
    "init",
    "kl",
    "ig_kl",
    "elbo",
    "fit",
    "predict",
    "inducing_points",
    "kernel_blocks",
    "fit_hyperparameters",
]


class TrainConfig(NamedTuple):
    """Adam settings of the ELBO maximisation.

    Attributes
    ----------
    num_steps
        Adam steps.
    batch_size
        Minibatch size ``B`` (rows drawn without replacement each step).
    num_samples
        Monte Carlo draws of ``(sigma^2, f)`` per step.
    learning_rate
        Adam step size.
    """

    num_steps: int = 1000
    batch_size: int = 100
    num_samples: int = 16
    learning_rate: float = 1e-2


class KernelLearning(NamedTuple):
    """What :func:`fit_hyperparameters` learns besides ``q``, and how fast.

    Attributes
    ----------
    learn_prior
        Learn ``alpha`` and ``beta`` of the prior ``IG(alpha, beta)``.
    learn_kernel
        Learn the kernel hyperparameters ``h`` (``False``: plain :func:`fit` at the initial
        ``h``, same compiled program, for comparisons).
    warmup_steps
        Steps during which only the variational parameters move (``None``: a quarter of the
        steps): with ``q`` still at its initialisation the kernel gradient is dominated by the
        mismatch of ``S_c = I`` with ``Kbar(Z, Z)`` and runs away.
    kernel_rate
        Step size of the (log) kernel hyperparameters relative to the Adam step size. At
        fixed ``q`` a larger kernel scale always lowers the KL (``tr(K^-1 S)``,
        ``m^T K^-1 m``), so ``q`` must track the kernel; a slower kernel keeps it close to
        the profile optimum instead of drifting to large ``W_std`` along the flat ELBO.
    """

    learn_prior: bool = True
    learn_kernel: bool = True
    warmup_steps: int | None = None
    kernel_rate: float = 0.05


class VariationalParams(NamedTuple):
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


class KernelBlocks(NamedTuple):
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


def prepare_kernels(k_zz, k_xz, k_xx, jitter: float = 1e-6) -> KernelBlocks:
    """Validate the kernel blocks and factorise ``K_ZZ + jitter * mean(diag) I``."""
    k_zz = check_matrix("k_zz", k_zz, square=True)
    k_xz = check_matrix("k_xz", k_xz)
    k_xx = jnp.asarray(k_xx)
    if k_xz.shape[1] != k_zz.shape[0] or k_xx.shape != (k_xz.shape[0],):
        raise ValueError(
            f"k_xz must be (N, {k_zz.shape[0]}) and k_xx (N,), got {k_xz.shape}, {k_xx.shape}"
        )
    L = cholesky_relative_jitter(k_zz, jitter)
    if not bool(jnp.all(jnp.isfinite(L))):
        raise ValueError("k_zz is not positive definite; increase jitter or thin Z")
    return KernelBlocks(L, k_xz, k_xx)


def inducing_points(rng_key, labels, num_inducing: int) -> jax.Array:
    """Indices of ``num_inducing`` training points drawn without replacement in class
    proportion (the choice of ``Z`` in the authors' ``spax`` code)."""
    labels = np.asarray(labels)
    if not 0 < num_inducing <= labels.shape[0]:
        raise ValueError(f"num_inducing must be in 1..{labels.shape[0]}, got {num_inducing!r}")
    classes, counts = np.unique(labels, return_counts=True)
    per = np.floor(counts / counts.sum() * num_inducing).astype(int)
    per[np.argsort(-counts)[: num_inducing - per.sum()]] += 1
    perm = np.asarray(jax.random.permutation(rng_key, labels.shape[0]))
    idx = [perm[labels[perm] == c][:k] for c, k in zip(classes, per, strict=True)]
    return jnp.asarray(np.sort(np.concatenate(idx)))


def init(num_inducing: int, num_classes: int, alpha=2.0, beta=2.0) -> VariationalParams:
    """Zero means, unit ``S_c`` and ``q(sigma^2)`` at the prior ``IG(alpha, beta)``."""
    return VariationalParams(
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


def kl(params: VariationalParams, chol_zz, alpha, beta, model: str = "t", scale=1.0):
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


def _marginals(params: VariationalParams, chol_zz, k_bz, k_bb):
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


def _elbo(
    params, rng_key, chol_zz, k_bz, k_bb, labels_b, n, alpha, beta, num_samples, model, scale
):
    """``n/B sum_batch E_q[log softmax_y f] - KL`` from the minibatch kernel blocks."""
    k_sig, k_f = jax.random.split(rng_key)
    mean, var = _marginals(params, chol_zz, k_bz, k_bb)
    s2 = _sigma2_draws(params, k_sig, num_samples, model, scale)
    eps = jax.random.normal(k_f, (num_samples,) + mean.shape, mean.dtype)
    f = mean[None] + jnp.sqrt(s2[:, None, None] * var[None]) * eps
    logp = jax.nn.log_softmax(f, axis=-1)
    ll = jnp.take_along_axis(logp, labels_b[None, :, None], axis=-1)[..., 0]
    return n * jnp.mean(ll) - kl(params, chol_zz, alpha, beta, model, scale)


def elbo(
    params: VariationalParams,
    rng_key,
    kernels: KernelBlocks,
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
    k_bz, k_bb = kernels.k_xz[idx], kernels.k_xx[idx]
    n = kernels.k_xz.shape[0]
    return _elbo(
        params, rng_key, kernels.chol_zz, k_bz, k_bb, labels, n, alpha, beta, num_samples,
        model, scale,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size", "num_samples", "model"))
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
    learning_rate,
):
    n = labels.shape[0]
    optimizer = optax.adam(learning_rate)  # built here: a traced rate, one compiled program

    def loss(p, key):
        k_idx, k_mc = jax.random.split(key)
        idx = jax.random.choice(k_idx, n, (batch_size,), replace=False)
        value = elbo(p, k_mc, kernels, idx, labels[idx], alpha, beta, num_samples, model, scale)
        return -value / n

    return minimize(loss, optimizer, params, jax.random.split(rng_key, num_steps))


def fit(
    kernels: KernelBlocks,
    labels,
    num_classes: int,
    rng_key,
    *,
    alpha: float = 2.0,
    beta: float = 2.0,
    model: str = "t",
    scale: float = 1.0,
    config: TrainConfig | None = None,
):
    """Maximise the SVTP (or SVGP, ``model="gp"``) ELBO with Adam.

    Parameters
    ----------
    kernels
        From :func:`prepare_kernels` (training rows).
    labels
        ``(N,)`` integer classes.
    num_classes
        ``C``.
    rng_key
        PRNG key (minibatches and Monte Carlo draws).
    alpha, beta
        Prior ``IG(alpha, beta)`` on ``sigma^2``.
    model
        ``"t"`` (SVTP) or ``"gp"`` (SVGP with ``sigma^2 = scale``).
    scale
        ``sigma^2`` of the SVGP.
    config
        :class:`TrainConfig` (steps, minibatch size, Monte Carlo draws, step size;
        ``None``: its defaults).

    Returns
    -------
    tuple
        ``(params, losses)``: :class:`VariationalParams` and the negative ELBO per point per
        step.
    """
    num_steps, batch_size, num_samples, learning_rate = config or TrainConfig()
    if model not in ("t", "gp"):
        raise ValueError(f"model must be 't' or 'gp', got {model!r}")
    alpha, beta, scale = (
        positive("alpha", alpha),
        positive("beta", beta),
        positive("scale", scale),
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
    params = init(kernels.chol_zz.shape[0], num_classes, alpha, beta)
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
        jnp.asarray(learning_rate, jnp.float32),
    )


@functools.partial(jax.jit, static_argnames=("num_samples", "model"))
def predict(
    params: VariationalParams,
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


# ----------------------------------------------------------------------------- kernel learning


def kernel_blocks(transform, x, z, jitter: float = 1e-6):
    """Kernel blocks of an NNGP transform, differentiable in its hyperparameters.

    Computes ``Kbar(Z, Z)`` (exact diagonal), ``Kbar(X, Z)`` and the exact variances
    ``Kbar(x, x)`` with :func:`bayesnn.nn.kernels.input_kernel` and ``transform`` directly
    (no caching, so ``transform`` may close over traced ``W_std``/``b_std``).

    Parameters
    ----------
    transform
        ``Kernel -> Kernel`` (e.g. ``stax.serial(...).kernel``) at unit readout scale.
    x
        ``(B, d)`` inputs (a minibatch).
    z
        ``(M, d)`` inducing inputs.
    jitter
        Relative jitter added to ``Kbar(Z, Z)`` before its Cholesky factorisation.

    Returns
    -------
    KernelBlocks
        ``(chol_zz, k_xz, k_xx)``.
    """
    k_zz = transform(input_kernel(z, None, compute_ntk=False)).nngp
    k_b = transform(input_kernel(x, z, compute_ntk=False))
    return KernelBlocks(cholesky_relative_jitter(k_zz, jitter), k_b.nngp, k_b.var1)


@functools.partial(
    jax.jit,
    static_argnames=(
        "kernel_builder", "num_steps", "batch_size", "num_samples", "model",
    ),
)  # fmt: skip
def _fit_hyper_run(
    theta, rng_key, x, z, labels, scale, jitter, learn, warmup, learning_rate, kernel_rate,
    kernel_builder, num_steps, batch_size, num_samples, model,
):  # fmt: skip
    n = labels.shape[0]
    slow_kernel = optax.stateless(  # kernel steps kernel_rate times the Adam step
        lambda u, _: {
            **u,
            "kernel": jax.tree_util.tree_map(lambda a: a * kernel_rate, u["kernel"]),
        }
    )
    optimizer = optax.chain(optax.adam(learning_rate), slow_kernel)

    def frozen(v, on):  # traced switch: one compiled program whatever is learned
        return jnp.where(on, v, jax.lax.stop_gradient(v))

    def loss(th, inp):
        key, i = inp
        k_idx, k_mc = jax.random.split(key)
        idx = jax.random.choice(k_idx, n, (batch_size,), replace=False)
        on = learn & (i >= warmup)
        h = jax.tree_util.tree_map(lambda v: jnp.exp(frozen(v, on[0])), th["kernel"])
        kern = kernel_blocks(kernel_builder(h), x[idx], z, jitter)
        alpha = jnp.exp(frozen(th["log_alpha"], on[1]))
        beta = jnp.exp(frozen(th["log_beta"], on[1]))
        elbo = _elbo(
            th["q"], k_mc, kern.chol_zz, kern.k_xz, kern.k_xx, labels[idx], n, alpha, beta,
            num_samples, model, scale,
        )  # fmt: skip
        return -elbo / n

    steps = (jax.random.split(rng_key, num_steps), jnp.arange(num_steps))
    return minimize(loss, optimizer, theta, steps)


def fit_hyperparameters(
    kernel_builder,
    kernel_init: dict,
    x,
    z,
    labels,
    num_classes: int,
    rng_key,
    *,
    alpha: float = 2.0,
    beta: float = 2.0,
    model: str = "t",
    scale: float = 1.0,
    jitter: float = 1e-6,
    learning: KernelLearning | None = None,
    config: TrainConfig | None = None,
):
    """SVTP (or SVGP) with the kernel hyperparameters learned by maximising the ELBO.

    Jointly maximises, by Adam, the minibatch ELBO of :func:`elbo` over the variational
    parameters, the kernel hyperparameters ``h`` (e.g. ``W_std``, ``b_std`` of the hidden
    layers) and, with ``learning.learn_prior``, the prior ``IG(alpha, beta)`` of ``sigma^2``
    (type-II maximum likelihood of the variational bound, as in the kernel learning of Lee
    et al., ICLR 2022):

    .. math::

        \\max_{q,\\, h,\\, \\alpha,\\, \\beta}\\;
        \\sum_i \\mathbb{E}_{q}[\\log \\mathrm{softmax}_{y_i} f(x_i)]
        - \\mathrm{KL}\\big(q(\\sigma^2, u) \\,\\|\\, p_{h,\\alpha,\\beta}(\\sigma^2, u)\\big),

    with ``Kbar_h(Z, Z)``, ``Kbar_h(X_batch, Z)`` recomputed at every step by
    :func:`kernel_blocks`. The readout ``W_std`` stays 1: it only enters through
    ``beta`` (not identifiable separately). Kernel hyperparameters are optimised as logs, so
    they stay positive (use a positive ``b_std``).

    Parameters
    ----------
    kernel_builder
        ``kernel_builder(h) -> (Kernel -> Kernel)`` built from the transforms of
        :mod:`bayesnn.nn.kernels` (``stax.Dense`` checks its arguments eagerly and cannot
        take traced values), e.g. ``dense_kernel(h["W_std"], h["b_std"], "ntk")`` then
        ``activation_kernel("relu", jax.nn.relu)`` then ``dense_kernel(1.0, None, "ntk")``,
        composed. Must be hashable (a module-level function; one compiled program per
        builder).
    kernel_init
        Initial positive hyperparameters ``h`` (a dict of floats).
    x
        ``(N, d)`` training inputs.
    z
        ``(M, d)`` inducing inputs (e.g. ``x[inducing_points(...)]``).
    labels
        ``(N,)`` integer classes.
    num_classes
        ``C``.
    rng_key
        PRNG key.
    alpha, beta
        Prior ``IG(alpha, beta)`` (initial values when ``learning.learn_prior``).
    model
        ``"t"`` (SVTP) or ``"gp"`` (SVGP with ``sigma^2 = scale``; the prior is unused).
    scale
        ``sigma^2`` of the SVGP.
    jitter
        Relative jitter of ``Kbar(Z, Z)``.
    learning
        :class:`KernelLearning`: what is learned besides ``q`` and the kernel step size
        (``None``: its defaults).
    config
        :class:`TrainConfig` (steps, minibatch size, Monte Carlo draws, step size;
        ``None``: its defaults).

    Returns
    -------
    tuple
        ``(params, hyper, losses)``: :class:`VariationalParams`; ``hyper = {"kernel": h,
        "alpha", "beta"}``; the negative ELBO per point per step.
    """
    num_steps, batch_size, num_samples, learning_rate = config or TrainConfig()
    learn_prior, learn_kernel, warmup_steps, kernel_rate = learning or KernelLearning()
    if model not in ("t", "gp"):
        raise ValueError(f"model must be 't' or 'gp', got {model!r}")
    alpha, beta, scale = (
        positive("alpha", alpha),
        positive("beta", beta),
        positive("scale", scale),
    )
    if not isinstance(kernel_init, dict) or not kernel_init:
        raise ValueError(f"kernel_init must be a non-empty dict of floats, got {kernel_init!r}")
    for k, v in kernel_init.items():
        positive(f"kernel_init[{k!r}]", v)
    x = check_matrix("x", x)
    z = check_matrix("z", z)
    if z.shape[1] != x.shape[1]:
        raise ValueError(f"z must have {x.shape[1]} columns like x, got {z.shape}")
    labels = jnp.asarray(labels)
    if labels.shape != (x.shape[0],) or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {labels.shape}")
    if not isinstance(batch_size, int) or not 0 < batch_size <= labels.shape[0]:
        raise ValueError(f"batch_size must be in 1..{labels.shape[0]}, got {batch_size!r}")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    dt = x.dtype
    theta = {
        "q": init(z.shape[0], num_classes, alpha, beta),
        "kernel": {k: jnp.log(jnp.asarray(v, dt)) for k, v in kernel_init.items()},
        "log_alpha": jnp.log(jnp.asarray(alpha, dt)),
        "log_beta": jnp.log(jnp.asarray(beta, dt)),
    }
    if warmup_steps is None:
        warmup_steps = num_steps // 4
    if not isinstance(warmup_steps, int) or not 0 <= warmup_steps <= num_steps:
        raise ValueError(f"warmup_steps must be in 0..{num_steps}, got {warmup_steps!r}")
    learn = jnp.asarray([bool(learn_kernel), bool(learn_prior)])
    theta, losses = _fit_hyper_run(
        theta, rng_key, x, z.astype(dt), labels, scale, jitter, learn, warmup_steps,
        jnp.asarray(learning_rate, dt), jnp.asarray(kernel_rate, dt), kernel_builder,
        num_steps, batch_size, num_samples, model,
    )  # fmt: skip
    hyper = {
        "kernel": {k: jnp.exp(v) for k, v in theta["kernel"].items()},
        "alpha": jnp.exp(theta["log_alpha"]),
        "beta": jnp.exp(theta["log_beta"]),
    }
    return theta["q"], hyper, losses
