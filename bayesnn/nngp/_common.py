"""Validation and small numerics shared by the NNGP regression modules (private).

Eager checks raise a ``ValueError`` naming the argument; values are cast to the default
float dtype on the way out (float64 inside, float32 results unless x64 is enabled).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_2d_targets",
    "check_matrix",
    "positive",
    "to_default_float",
    "check_test_diag",
    "clip_variance",
    "scaled_sd",
    "is_tracer",
    "check_log_marginal_args",
    "gaussian_stats",
    "check_factorised",
]


def as_2d_targets(y, n: int) -> jax.Array:
    """Targets as an ``(n, C)`` array (``(n,)`` becomes ``(n, 1)``)."""
    y = jnp.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) or ({n}, C), got {y.shape}")
    return y


def check_matrix(name: str, k, square: bool = False) -> jax.Array:
    """A 2-D (square) matrix, finite unless traced; errors name ``name``."""
    k = jnp.asarray(k)
    if k.ndim != 2 or (square and k.shape[0] != k.shape[1]):
        kind = "square 2-D" if square else "2-D"
        raise ValueError(f"{name} must be a {kind} matrix, got shape {k.shape}")
    if not isinstance(k, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(k))):
        raise ValueError(f"{name} contains NaN or inf")
    return k


def positive(name: str, v) -> float:
    """``float(v)`` if it is positive and finite, else a ``ValueError`` naming ``name``."""
    if v is None or not np.isfinite(float(v)) or not float(v) > 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(v)


def to_default_float(*xs):
    """Cast float64 results to the default float dtype (float32 unless x64 is enabled)."""
    dt = jnp.zeros(()).dtype
    res = tuple(jnp.asarray(x).astype(dt) for x in xs)
    return res[0] if len(res) == 1 else res


def check_test_diag(k_test_diag, m: int) -> jax.Array:
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


def clip_variance(var, kd, what: str = "k_test_train"):
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
def scaled_sd(var, eta, scale, n_out):
    """``sqrt(scale (var + eta))`` broadcast to ``(m, n_out)``."""
    return jnp.sqrt(scale * (var + eta))[:, None] * jnp.ones((1, n_out), var.dtype)


def is_tracer(x) -> bool:
    """Whether ``x`` is traced (inside ``jit``/``grad``/``vmap``): no eager checks then."""
    return isinstance(x, jax.core.Tracer)


def check_log_marginal_args(k_train, y, **params):
    """Eager checks of the concrete arguments (traced ones are left to the caller)."""
    for name, v in params.items():
        if not is_tracer(v):
            if jnp.ndim(v) != 0:
                raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}")
            positive(name, v)
    if not is_tracer(k_train):
        check_matrix("k_train", k_train, square=True)
    if not is_tracer(y):
        y = as_2d_targets(y, jnp.shape(k_train)[0])
        if not bool(jnp.all(jnp.isfinite(y))):
            raise ValueError("y contains NaN or inf")


def gaussian_stats(k_train, y, eta):
    """``q = tr(Y^T K^-1 Y)``, ``log|K|`` of ``K = Kbar + eta I`` and whether ``K`` factorised."""
    n = y.shape[0]
    L = jnp.linalg.cholesky(k_train + eta * jnp.eye(n, dtype=k_train.dtype))
    a = jax.scipy.linalg.solve_triangular(L, y, lower=True)
    return jnp.sum(a * a), 2.0 * jnp.sum(jnp.log(jnp.diag(L))), jnp.all(jnp.isfinite(L))


def check_factorised(ok, *args):
    """Raise if a concrete Cholesky of ``k_train + eta I`` failed (``ok`` false)."""
    if not any(is_tracer(v) for v in (ok, *args)) and not bool(ok):
        raise ValueError(
            "k_train + eta I is not positive definite (its Cholesky factorisation failed): "
            "k_train is not a PSD kernel matrix, or eta is too small for its round-off"
        )
