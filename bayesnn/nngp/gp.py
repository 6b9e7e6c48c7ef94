"""NNGP (Gaussian-process) regression at a fixed last-layer scale.

With ``Kbar`` the NNGP kernel of an architecture at unit last-layer scale, ``K = Kbar(X, X) +
eta I`` and ``sigma^2`` the last-layer variance, the model ``Y_{:,c} ~ N(0, sigma^2 K)``
(``c = 1..C``) has the predictive

.. math::

    y_* \\mid Y \\sim N(\\mu_*, \\sigma^2 (\\Sigma_* + \\eta)), \\quad
    \\mu_* = K_{*X} K^{-1} Y, \\quad \\Sigma_* = K_{**} - K_{*X} K^{-1} K_{X*}

(Lee et al., "Deep Neural Networks as Gaussian Processes", ICLR 2018). :func:`fit`
factorises ``K`` once; :func:`predict`, :mod:`bayesnn.nngp.tp` and
:mod:`bayesnn.nngp.mixtures` reuse the factorisation.

Numerics: :func:`fit` / :func:`predict` compute in float64 (locally enabled) and regularise
with an **absolute** ``eta`` (neural-tangents' ``diag_reg`` is relative); results come back in
the default float dtype. :func:`log_marginal` computes in its input dtype so that it can be
differentiated under ``jit`` (enable ``jax_enable_x64`` for float64 fitting).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from bayesnn._linalg import regularised_cholesky, symmetrise
from bayesnn.nngp._common import (
    as_2d_targets,
    check_factorised,
    check_log_marginal_args,
    check_matrix,
    check_test_diag,
    clip_variance,
    gaussian_stats,
    positive,
    scaled_sd,
    to_default_float,
)

__all__ = ["GPPosterior", "fit", "predict", "log_marginal", "latent_moments"]


class GPPosterior(NamedTuple):
    """Cached factorisation of ``K = Kbar(X, X) + eta I`` (float64).

    Attributes
    ----------
    chol
        Lower Cholesky factor ``L`` of ``K``.
    weights
        ``K^{-1} Y``, shape ``(n, C)``.
    quad
        ``q = tr(Y^T K^{-1} Y)``.
    logdet
        ``log |K|``.
    eta
        Absolute diagonal regularisation (observation-noise variance per unit ``sigma^2``).
    """

    chol: jax.Array
    weights: jax.Array
    quad: jax.Array
    logdet: jax.Array
    eta: float

    @property
    def n(self) -> int:
        """Number of training points."""
        return self.weights.shape[0]

    @property
    def n_out(self) -> int:
        """Number of outputs ``C``."""
        return self.weights.shape[1]


@jax.jit
def _factorise(k, y, eta):
    """Cholesky of ``sym(K) + eta I`` and the cached solves (one compiled program)."""
    L = jnp.linalg.cholesky(symmetrise(k) + eta * jnp.eye(k.shape[0], dtype=k.dtype))
    w = jax.scipy.linalg.cho_solve((L, True), y)
    return L, w, jnp.sum(y * w), 2.0 * jnp.sum(jnp.log(jnp.diag(L)))


def fit(k_train: jax.Array, y: jax.Array, eta: float = 1e-6) -> GPPosterior:
    """Factorise ``K = Kbar(X, X) + eta I`` once (float64) for GP and scale-mixture posteriors.

    Parameters
    ----------
    k_train
        ``(n, n)`` NNGP (or any) kernel matrix at unit scale.
    y
        ``(n,)`` or ``(n, C)`` targets.
    eta
        Absolute diagonal regularisation (noise variance relative to ``sigma^2``).
    """
    eta = positive("eta", eta)
    k = check_matrix("k_train", k_train, square=True)
    with jax.enable_x64(True):
        y = as_2d_targets(y, k.shape[0]).astype(jnp.float64)
        if not bool(jnp.all(jnp.isfinite(y))):
            raise ValueError("y contains NaN or inf")
        k = k.astype(jnp.float64)
        L, w, quad, logdet = _factorise(k, y, jnp.asarray(eta, jnp.float64))
        if not bool(jnp.all(jnp.isfinite(L))):  # bounded jitter, then a clear error
            L = regularised_cholesky(k, eta)
            w = jax.scipy.linalg.cho_solve((L, True), y)
            quad = jnp.sum(y * w)
            logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    return GPPosterior(L, w, quad, logdet, eta)


@jax.jit
def _latent_core(L, w, k_xX, kd):
    mean = k_xX @ w
    v = jax.scipy.linalg.solve_triangular(L, k_xX.T, lower=True)
    return mean, kd - jnp.sum(v * v, axis=0)


def latent_moments(post: GPPosterior, k_test_train, k_test_diag):
    """Latent mean ``mu* (m, C)`` and variance ``Sigma* (m,)`` at unit scale (float64).

    Raises
    ------
    ValueError
        If ``k_test_diag`` is negative or not finite, or if ``Sigma*`` is below
        ``-1e-4 max(k_test_diag)`` (the joint kernel matrix is not positive semi-definite);
        round-off negatives above that are clipped to 0.
    """
    k_xX = check_matrix("k_test_train", k_test_train).astype(jnp.float64)
    if k_xX.shape[1] != post.n:
        raise ValueError(f"k_test_train must have {post.n} columns, got {k_xX.shape}")
    kd = check_test_diag(k_test_diag, k_xX.shape[0])
    mean, var = _latent_core(post.chol, post.weights, k_xX, kd)
    return mean, clip_variance(var, kd)


def predict(
    post: GPPosterior,
    k_test_train: jax.Array,
    k_test_diag: jax.Array,
    scale: float = 1.0,
    include_noise: bool = True,
):
    """Marginal Gaussian predictive of the NNGP with fixed scale ``sigma^2 = scale``.

    .. math::

        y_* \\mid Y \\sim N(\\mu_*, \\sigma^2 (\\Sigma_* + \\eta)), \\quad
        \\mu_* = K_{*X} K^{-1} Y, \\quad \\Sigma_* = K_{**} - K_{*X} K^{-1} K_{X*}.

    Parameters
    ----------
    post
        From :func:`fit`.
    k_test_train
        ``(m, n)`` kernel between test and training inputs.
    k_test_diag
        ``(m,)`` test variances ``Kbar(x*, x*)``.
    scale
        ``sigma^2`` (the last-layer variance; ``W_std^2`` of a unit-scale readout).
    include_noise
        Add ``eta`` (predictive for ``y``) or not (latent ``f``).

    Returns
    -------
    numpyro.distributions.Normal
        Batch shape ``(m, C)``.
    """
    scale = positive("scale", scale)
    with jax.enable_x64(True):
        mean, var = latent_moments(post, k_test_train, k_test_diag)
        sd = scaled_sd(var, post.eta if include_noise else 0.0, scale, post.n_out)
    return dist.Normal(*to_default_float(mean, sd))


def log_marginal(k_train: jax.Array, y: jax.Array, scale=1.0, eta=1e-6) -> jax.Array:
    """``log N(Y; 0, scale (Kbar + eta I))`` summed over outputs (differentiable, input dtype).

    .. math::

        -\\tfrac{nC}{2}\\log(2\\pi s) - \\tfrac{C}{2}\\log|K| - \\tfrac{q}{2 s}.

    Raises
    ------
    ValueError
        For concrete (not traced) arguments: ``scale`` or ``eta`` not positive and finite,
        ``k_train`` not square or not finite, ``y`` of the wrong shape or not finite, or
        ``k_train + eta I`` not positive definite. Under ``jit``/``grad`` these checks cannot
        run on traced values and such inputs give NaN.
    """
    check_log_marginal_args(k_train, y, scale=scale, eta=eta)
    value, ok = _gp_log_marginal(k_train, y, scale, eta)
    check_factorised(ok, k_train, y, scale, eta)
    return value


@jax.jit
def _gp_log_marginal(k_train, y, scale, eta):
    y = as_2d_targets(y, k_train.shape[0])
    n, c = y.shape
    q, logdet, ok = gaussian_stats(k_train, y, eta)
    return -0.5 * n * c * jnp.log(2 * math.pi * scale) - 0.5 * c * logdet - 0.5 * q / scale, ok
