"""NNGP regression and its inverse-gamma scale mixture, the Student-t process.

Model (Lee, Yun, Yang, Lee, "Scale Mixtures of Neural Network Gaussian Processes", ICLR
2022): with ``Kbar`` the NNGP kernel of the architecture at unit last-layer scale and
``K = Kbar(X, X) + eta I``,

.. math::

    \\sigma^2 \\sim \\mathrm{IG}(\\alpha, \\beta), \\qquad
    Y_{:,c} \\mid \\sigma^2 \\sim N(0, \\sigma^2 K), \\quad c = 1..C.

With ``q = tr(Y^T K^{-1} Y)`` the scale posterior is ``IG(alpha + nC/2, beta + q/2)`` and the
predictive at ``x*`` is a Student-t with ``2 alpha + nC`` degrees of freedom, the NNGP mean
``mu* = Kbar(x*, X) K^{-1} Y`` and scale ``(2 beta + q) / (2 alpha + nC) * Sigma*``.

Numerics: the public ``*_fit`` / ``*_predict`` functions compute in float64 (locally enabled)
and regularise with an **absolute** ``eta`` (neural-tangents' ``diag_reg`` is relative).
The pure ``*_log_marginal`` functions compute in their input dtype so they can be
differentiated under ``jit`` (enable ``jax_enable_x64`` for float64 fitting).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax

from bayesnn._linalg import regularised_cholesky, symmetrise
from bayesnn._training import minimize

__all__ = [
    "GPPosterior",
    "TPosterior",
    "gp_fit",
    "gp_predict",
    "gp_log_marginal",
    "tp_fit",
    "tp_predict",
    "tp_log_marginal",
    "fit_tp_hyperparameters",
]


def _as_2d_targets(y, n: int) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) or ({n}, C), got {y.shape}")
    return y


def _check_matrix(name: str, k, square: bool = False) -> jax.Array:
    k = jnp.asarray(k)
    if k.ndim != 2 or (square and k.shape[0] != k.shape[1]):
        kind = "square 2-D" if square else "2-D"
        raise ValueError(f"{name} must be a {kind} matrix, got shape {k.shape}")
    if not isinstance(k, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(k))):
        raise ValueError(f"{name} contains NaN or inf")
    return k


def _positive(name: str, v) -> float:
    if v is None or not np.isfinite(float(v)) or not float(v) > 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


def _out(*xs):
    """Cast float64 results to the default float dtype (float32 unless x64 is enabled)."""
    dt = jnp.zeros(()).dtype
    res = tuple(jnp.asarray(x).astype(dt) for x in xs)
    return res[0] if len(res) == 1 else res


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


def gp_fit(k_train: jax.Array, y: jax.Array, eta: float = 1e-6) -> GPPosterior:
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
    eta = _positive("eta", eta)
    k = _check_matrix("k_train", k_train, square=True)
    with jax.enable_x64(True):
        y = _as_2d_targets(y, k.shape[0]).astype(jnp.float64)
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


def _check_test_diag(k_test_diag, m: int) -> jax.Array:
    """``(m,)`` finite, non-negative test variances ``Kbar(x*, x*)`` (float64)."""
    kd = jnp.asarray(k_test_diag, jnp.float64)
    if kd.shape != (m,):
        raise ValueError(f"k_test_diag must have shape ({m},), got {kd.shape}")
    if not bool(jnp.all(jnp.isfinite(kd))):
        raise ValueError("k_test_diag contains NaN or inf")
    if bool(jnp.any(kd < 0)):
        raise ValueError(
            f"k_test_diag must be non-negative (test variances), min is {float(jnp.min(kd)):.3g}"
        )
    return kd


def _clip_variance(var, kd, what: str = "k_test_train"):
    """Clip round-off negatives of ``kd - k K^-1 k`` at 0; raise when they are not round-off.

    A latent variance below ``-1e-4 max(kd)`` means the joint kernel matrix of training and
    test inputs is not positive semi-definite (``k_test_diag`` too small for ``k_test_train``).
    """
    tol = 1e-4 * jnp.max(kd, initial=0.0)
    low = jnp.min(var, initial=0.0)
    if bool(low < -tol):
        raise ValueError(
            f"{what} and k_test_diag are inconsistent with k_train: the posterior variance "
            f"is {float(low):.3g} < 0 (the joint kernel matrix is not positive semi-definite)"
        )
    return jnp.maximum(var, 0.0)


@functools.partial(jax.jit, static_argnums=3)
def _scaled_sd(var, eta, scale, n_out):
    """``sqrt(scale (var + eta))`` broadcast to ``(m, n_out)``."""
    return jnp.sqrt(scale * (var + eta))[:, None] * jnp.ones((1, n_out), var.dtype)


def _latent(post: GPPosterior, k_test_train, k_test_diag):
    k_xX = _check_matrix("k_test_train", k_test_train).astype(jnp.float64)
    if k_xX.shape[1] != post.n:
        raise ValueError(f"k_test_train must have {post.n} columns, got {k_xX.shape}")
    kd = _check_test_diag(k_test_diag, k_xX.shape[0])
    mean, var = _latent_core(post.chol, post.weights, k_xX, kd)
    return mean, _clip_variance(var, kd)


def gp_predict(
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
        From :func:`gp_fit`.
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
    scale = _positive("scale", scale)
    with jax.enable_x64(True):
        mean, var = _latent(post, k_test_train, k_test_diag)
        sd = _scaled_sd(var, post.eta if include_noise else 0.0, scale, post.n_out)
    return dist.Normal(*_out(mean, sd))


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_log_marginal_args(k_train, y, **positive):
    """Eager checks of the concrete arguments (traced ones are left to the caller)."""
    for name, v in positive.items():
        if not _is_tracer(v):
            if jnp.ndim(v) != 0:
                raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}")
            _positive(name, v)
    if not _is_tracer(k_train):
        _check_matrix("k_train", k_train, square=True)
    if not _is_tracer(y):
        y = _as_2d_targets(y, jnp.shape(k_train)[0])
        if not bool(jnp.all(jnp.isfinite(y))):
            raise ValueError("y contains NaN or inf")


def _gaussian_stats(k_train, y, eta):
    """``q = tr(Y^T K^-1 Y)``, ``log|K|`` of ``K = Kbar + eta I`` and whether ``K`` factorised."""
    n = y.shape[0]
    L = jnp.linalg.cholesky(k_train + eta * jnp.eye(n, dtype=k_train.dtype))
    a = jax.scipy.linalg.solve_triangular(L, y, lower=True)
    return jnp.sum(a * a), 2.0 * jnp.sum(jnp.log(jnp.diag(L))), jnp.all(jnp.isfinite(L))


def _check_factorised(ok, *args):
    if not any(_is_tracer(v) for v in (ok, *args)) and not bool(ok):
        raise ValueError(
            "k_train + eta I is not positive definite (its Cholesky factorisation failed): "
            "k_train is not a PSD kernel matrix, or eta is too small for its round-off"
        )


def gp_log_marginal(k_train: jax.Array, y: jax.Array, scale=1.0, eta=1e-6) -> jax.Array:
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
    _check_log_marginal_args(k_train, y, scale=scale, eta=eta)
    value, ok = _gp_log_marginal(k_train, y, scale, eta)
    _check_factorised(ok, k_train, y, scale, eta)
    return value


@jax.jit
def _gp_log_marginal(k_train, y, scale, eta):
    y = _as_2d_targets(y, k_train.shape[0])
    n, c = y.shape
    q, logdet, ok = _gaussian_stats(k_train, y, eta)
    return -0.5 * n * c * jnp.log(2 * math.pi * scale) - 0.5 * c * logdet - 0.5 * q / scale, ok


class TPosterior(NamedTuple):
    """Student-t process posterior: the GP factorisation and the IG posterior of ``sigma^2``.

    Attributes
    ----------
    gp
        :class:`GPPosterior` of ``Kbar + eta I``.
    alpha, beta
        Posterior inverse-gamma parameters ``alpha + nC/2`` and ``beta + q/2``.
    """

    gp: GPPosterior
    alpha: jax.Array
    beta: jax.Array

    def scale_posterior(self) -> dist.InverseGamma:
        """``sigma^2 | Y ~ IG(alpha + nC/2, beta + q/2)`` as a numpyro distribution."""
        return dist.InverseGamma(*_out(self.alpha, self.beta))


def tp_fit(k_train, y, alpha: float, beta: float, eta: float = 1e-6) -> TPosterior:
    """Exact Student-t process posterior under ``sigma^2 ~ IG(alpha, beta)``.

    ``beta`` absorbs the readout ``W_std^2`` (they only enter as a product): build ``Kbar``
    with unit last-layer ``W_std``. Multi-output ``y`` shares one ``sigma^2``.
    """
    alpha = _positive("alpha", alpha)
    beta = _positive("beta", beta)
    gp = gp_fit(k_train, y, eta)
    with jax.enable_x64(True):
        a = jnp.asarray(alpha + 0.5 * gp.n * gp.n_out, jnp.float64)
        b = jnp.asarray(beta, jnp.float64) + 0.5 * gp.quad
    return TPosterior(gp, a, b)


def tp_predict(
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
        mean, var = _latent(post.gp, k_test_train, k_test_diag)
        eta = post.gp.eta if include_noise else 0.0
        sd = _scaled_sd(var, eta, post.beta / post.alpha, post.gp.n_out)
        df = 2.0 * post.alpha
    return dist.StudentT(*_out(df, mean, sd))


def tp_log_marginal(k_train, y, alpha, beta, eta=1e-6) -> jax.Array:
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
    _check_log_marginal_args(k_train, y, alpha=alpha, beta=beta, eta=eta)
    value, ok = _tp_log_marginal(k_train, y, alpha, beta, eta)
    _check_factorised(ok, k_train, y, alpha, beta, eta)
    return value


@jax.jit
def _tp_log_marginal(k_train, y, alpha, beta, eta):
    y = _as_2d_targets(y, k_train.shape[0])
    n, c = y.shape
    q, logdet, ok = _gaussian_stats(k_train, y, eta)
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


def fit_tp_hyperparameters(
    k_train,
    y,
    init: dict | None = None,
    kernel_matrix: Callable | None = None,
    num_steps: int = 500,
    learning_rate: float = 1e-2,
):
    """Type-II maximum likelihood of ``(alpha, beta, eta)`` (and kernel parameters) by Adam.

    Maximises :func:`tp_log_marginal` / n over unconstrained logs. ``beta`` is the single
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
        _positive(name, init[name])
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    y = jnp.asarray(y)
    theta = {k: jnp.log(jnp.asarray(init[k], jnp.float32)) for k in ("alpha", "beta", "eta")}
    if kernel_matrix is not None:
        theta["kernel"] = init["kernel"]
        k_train = None
    else:
        k_train = _check_matrix("k_train", k_train, square=True)
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
        return -tp_log_marginal(k, y, a, b, e) / y.shape[0]

    return minimize(lambda th, _: loss(th), optax.adam(learning_rate), theta, length=num_steps)
