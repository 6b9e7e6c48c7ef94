"""The Student-t process: NNGP regression with an inverse-gamma last-layer variance.

Model (Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR
2022): with ``Kbar`` the NNGP kernel of the architecture at unit last-layer scale and
``K = Kbar(X, X) + eta I``,

.. math::

    \\sigma^2 \\sim \\mathrm{IG}(\\alpha, \\beta), \\qquad
    Y_{:,c} \\mid \\sigma^2 \\sim N(0, \\sigma^2 K), \\quad c = 1..C.

With ``q = tr(Y^T K^{-1} Y)`` the scale posterior is ``IG(alpha + nC/2, beta + q/2)`` and the
predictive at ``x*`` is a Student-t with ``2 alpha + nC`` degrees of freedom, the NNGP mean
``mu* = Kbar(x*, X) K^{-1} Y`` and scale ``(2 beta + q) / (2 alpha + nC) * Sigma*``.

Numerics as in :mod:`bayesnn.nngp.gp`: :func:`fit` / :func:`predict` in float64,
:func:`log_marginal` in its input dtype (differentiable under ``jit``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax

from bayesnn._training import minimize
from bayesnn.nngp._common import (
    as_2d_targets,
    check_factorised,
    check_log_marginal_args,
    check_matrix,
    gaussian_stats,
    positive,
    scaled_sd,
    to_default_float,
)
from bayesnn.nngp.gp import GPPosterior, latent_moments
from bayesnn.nngp.gp import fit as fit_gp

__all__ = ["TPosterior", "fit", "predict", "log_marginal", "fit_hyperparameters"]


class TPosterior(NamedTuple):
    """Student-t process posterior: the GP factorisation and the IG posterior of ``sigma^2``.

    Attributes
    ----------
    gp
        :class:`bayesnn.nngp.gp.GPPosterior` of ``Kbar + eta I``.
    alpha, beta
        Posterior inverse-gamma parameters ``alpha + nC/2`` and ``beta + q/2``.
    """

    gp: GPPosterior
    alpha: jax.Array
    beta: jax.Array

    def scale_posterior(self) -> dist.InverseGamma:
        """``sigma^2 | Y ~ IG(alpha + nC/2, beta + q/2)`` as a numpyro distribution."""
        return dist.InverseGamma(*to_default_float(self.alpha, self.beta))


def fit(k_train, y, alpha: float, beta: float, eta: float = 1e-6) -> TPosterior:
    """Exact Student-t process posterior under ``sigma^2 ~ IG(alpha, beta)``.

    ``beta`` absorbs the readout ``W_std^2`` (they only enter as a product): build ``Kbar``
    with unit last-layer ``W_std``. Multi-output ``y`` shares one ``sigma^2``.
    """
    alpha = positive("alpha", alpha)
    beta = positive("beta", beta)
    gp = fit_gp(k_train, y, eta)
    with jax.enable_x64(True):
        a = jnp.asarray(alpha + 0.5 * gp.n * gp.n_out, jnp.float64)
        b = jnp.asarray(beta, jnp.float64) + 0.5 * gp.quad
    return TPosterior(gp, a, b)


def predict(
    post: TPosterior, k_test_train, k_test_diag, include_noise: bool = True
) -> dist.StudentT:
    """Marginal Student-t predictive of the t-process.

    .. math::

        y_* \\mid Y \\sim t_{2\\alpha + nC}\\left(\\mu_*,\\;
        \\frac{2\\beta + q}{2\\alpha + nC}(\\Sigma_* + \\eta)\\right)

    (scale squared shown; ``eta`` dropped when ``include_noise=False``).

    Returns
    -------
    numpyro.distributions.StudentT
        Batch shape ``(m, C)``.
    """
    with jax.enable_x64(True):
        mean, var = latent_moments(post.gp, k_test_train, k_test_diag)
        eta = post.gp.eta if include_noise else 0.0
        sd = scaled_sd(var, eta, post.beta / post.alpha, post.gp.n_out)
        df = 2.0 * post.alpha
    return dist.StudentT(*to_default_float(df, mean, sd))


def log_marginal(k_train, y, alpha, beta, eta=1e-6) -> jax.Array:
    """Evidence of the Student-t process (differentiable, input dtype).

    .. math::

        \\log p(Y) = \\log\\Gamma(\\alpha + \\tfrac{nC}{2}) - \\log\\Gamma(\\alpha)
        + \\alpha\\log\\beta - (\\alpha + \\tfrac{nC}{2})\\log(\\beta + \\tfrac{q}{2})
        - \\tfrac{nC}{2}\\log 2\\pi - \\tfrac{C}{2}\\log|K|,

    which for ``C = 1`` is ``log MVT_{2 alpha}(y; 0, (beta/alpha) K)``.

    Raises
    ------
    ValueError
        For concrete (not traced) arguments: ``alpha``, ``beta`` or ``eta`` not positive and
        finite, ``k_train`` not square or not finite, ``y`` of the wrong shape or not finite,
        or ``k_train + eta I`` not positive definite. Under ``jit``/``grad`` these checks
        cannot run on traced values and such inputs give NaN.
    """
    check_log_marginal_args(k_train, y, alpha=alpha, beta=beta, eta=eta)
    value, ok = _tp_log_marginal(k_train, y, alpha, beta, eta)
    check_factorised(ok, k_train, y, alpha, beta, eta)
    return value


@jax.jit
def _tp_log_marginal(k_train, y, alpha, beta, eta):
    y = as_2d_targets(y, k_train.shape[0])
    n, c = y.shape
    q, logdet, ok = gaussian_stats(k_train, y, eta)
    h = 0.5 * n * c
    gl = jax.scipy.special.gammaln
    value = (
        gl(alpha + h)
        - gl(alpha)
        + alpha * jnp.log(beta)
        - (alpha + h) * jnp.log(beta + 0.5 * q)
        - h * math.log(2 * math.pi)
        - 0.5 * c * logdet
    )
    return value, ok


def fit_hyperparameters(
    k_train,
    y,
    init: dict | None = None,
    kernel_matrix: Callable | None = None,
    num_steps: int = 500,
    learning_rate: float = 1e-2,
):
    """Type-II maximum likelihood of ``(alpha, beta, eta)`` (and kernel parameters) by Adam.

    Maximises :func:`log_marginal` / n over unconstrained logs. ``beta`` is the single
    scale parameter (``beta`` and the readout ``W_std^2`` are not separately identifiable).

    Parameters
    ----------
    k_train
        ``(n, n)`` fixed ``Kbar``; ignored when ``kernel_matrix`` is given.
    y
        Targets.
    init
        Initial values ``{"alpha", "beta", "eta"}`` (and ``"kernel"``: a pytree of kernel
        parameters passed to ``kernel_matrix``). Defaults 2, 2, 0.1.
    kernel_matrix
        Optional ``kernel_matrix(kernel_params) -> (n, n)`` (e.g. built from
        :func:`bayesnn.nn.kernels.dense_kernel` with traced ``W_std``).
    num_steps, learning_rate
        Adam settings.

    Returns
    -------
    tuple
        ``(params, losses)`` with ``params = {"alpha", "beta", "eta"[, "kernel"]}`` and the
        negative log evidence per point along the run.
    """
    init = {"alpha": 2.0, "beta": 2.0, "eta": 0.1, **(init or {})}
    for name in ("alpha", "beta", "eta"):
        positive(name, init[name])
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    y = jnp.asarray(y)
    theta = {k: jnp.log(jnp.asarray(init[k], jnp.float32)) for k in ("alpha", "beta", "eta")}
    if kernel_matrix is not None:
        theta["kernel"] = init["kernel"]
        k_train = None
    else:
        k_train = check_matrix("k_train", k_train, square=True)
    th, losses = _fit_run(theta, k_train, y, learning_rate, kernel_matrix, num_steps)
    out = {k: jnp.exp(th[k]) for k in ("alpha", "beta", "eta")}
    if kernel_matrix is not None:
        out["kernel"] = th["kernel"]
    return out, losses


@functools.partial(jax.jit, static_argnames=("kernel_matrix", "num_steps"))
def _fit_run(theta, k_train, y, learning_rate, kernel_matrix, num_steps):
    """Adam on the negative log evidence per point (one compiled program per setting)."""

    def loss(th):
        k = kernel_matrix(th["kernel"]) if kernel_matrix is not None else k_train
        a, b, e = jnp.exp(th["alpha"]), jnp.exp(th["beta"]), jnp.exp(th["eta"])
        return -log_marginal(k, y, a, b, e) / y.shape[0]

    return minimize(lambda th, _: loss(th), optax.adam(learning_rate), theta, length=num_steps)
