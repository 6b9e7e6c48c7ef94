"""Cholesky factorisation of kernel matrices with diagonal jitter (one copy for the package).

Three uses, one routine each:

* :func:`cholesky_relative_jitter`: ``L L^T = sym(K) + j mean(diag K) I`` with a fixed
  relative ``j``; pure and differentiable (inducing-point blocks inside a training loop).
* :func:`cholesky_with_jitter`: ``L L^T = K + j mean(diag K) I`` with ``j`` multiplied by
  ``factor`` until the factor is finite or ``max_jitter`` is passed; traceable (a
  ``lax.while_loop``, batched by ``vmap``), reports success as a flag.
* :func:`regularised_cholesky`: ``L L^T = sym(K) + eta I`` with an absolute ``eta``; eager.
  When that factor is not finite the relative jitter escalates from ``1e-10`` to ``1e-5``
  (:func:`cholesky_with_jitter`) and a ``ValueError`` naming the argument is raised if it
  still fails.

``sym(K) = (K + K^T) / 2`` removes the round-off asymmetry of kernel matrices computed
entry by entry; ``jnp.linalg.cholesky`` reads one triangle only, so asymmetric input would
be factorised silently as the wrong matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "symmetrise",
    "cholesky_relative_jitter",
    "cholesky_with_jitter",
    "regularised_cholesky",
]


def symmetrise(k: jax.Array) -> jax.Array:
    """``(K + K^T) / 2``."""
    return 0.5 * (k + k.T)


def cholesky_relative_jitter(k: jax.Array, jitter: float) -> jax.Array:
    """Lower factor of ``sym(K) + jitter * mean(diag K) I`` (traceable, differentiable)."""
    m = k.shape[0]
    scale = jnp.mean(jnp.diagonal(k))
    return jnp.linalg.cholesky(symmetrise(k) + jitter * scale * jnp.eye(m, dtype=k.dtype))


def cholesky_with_jitter(K, jitter=1e-6, max_jitter=1e-2, factor=10.0):
    """Cholesky factor of ``K + j mean(diag K) I`` with ``j`` escalated until it is finite.

    Works on one matrix ``(n, n)`` or a batch ``(..., n, n)``; each matrix escalates its own
    jitter (a ``lax.while_loop`` under ``vmap``).

    Parameters
    ----------
    K
        Symmetric matrix or batch of matrices.
    jitter, max_jitter
        First and largest jitter, relative to ``mean(diag K)``.
    factor
        Multiplier between attempts.

    Returns
    -------
    L, jitter_used, ok
        The lower factor, the relative jitter used and whether the factorisation succeeded
        (``L`` is NaN where ``ok`` is false).
    """
    if K.ndim < 2 or K.shape[-1] != K.shape[-2]:
        raise ValueError(f"K must be square (..., n, n), got shape {K.shape}")
    if not (0 < jitter <= max_jitter) or factor <= 1:
        raise ValueError(
            f"need 0 < jitter <= max_jitter and factor > 1, got {jitter}, {max_jitter}, {factor}"
        )
    if K.ndim > 2:
        batch = K.shape[:-2]
        flat = K.reshape((-1,) + K.shape[-2:])
        L, j, ok = jax.vmap(lambda k: cholesky_with_jitter(k, jitter, max_jitter, factor))(flat)
        return L.reshape(K.shape), j.reshape(batch), ok.reshape(batch)

    n = K.shape[-1]
    scale = jnp.mean(jnp.diag(K))
    eye = jnp.eye(n, dtype=K.dtype)

    def attempt(j):
        L = jnp.linalg.cholesky(K + (j * scale) * eye)
        return L, jnp.all(jnp.isfinite(L))

    def cond(state):
        j, _, ok = state
        return jnp.logical_and(~ok, j * factor <= max_jitter * (1 + 1e-6))

    def body(state):
        j, _, _ = state
        j = j * factor
        L, ok = attempt(j)
        return j, L, ok

    j0 = jnp.asarray(jitter, K.dtype)
    L0, ok0 = attempt(j0)
    j, L, ok = jax.lax.while_loop(cond, body, (j0, L0, ok0))
    ok = jnp.logical_and(ok, jnp.isfinite(scale))
    return L, j, ok


@jax.jit
def _plain(k, eta):
    return jnp.linalg.cholesky(symmetrise(k) + eta * jnp.eye(k.shape[0], dtype=k.dtype))


def regularised_cholesky(k: jax.Array, eta, name: str = "k_train") -> jax.Array:
    """Lower factor of ``sym(K) + eta I`` (eager, in ``K``'s dtype), escalating if needed.

    Raises
    ------
    ValueError
        If ``sym(K) + eta I`` is not numerically positive definite even with a relative
        jitter of ``1e-5`` added; the message names ``name``.
    """
    L = _plain(k, jnp.asarray(eta, k.dtype))
    if bool(jnp.all(jnp.isfinite(L))):
        return L
    kr = symmetrise(k) + eta * jnp.eye(k.shape[0], dtype=k.dtype)
    L, _, ok = cholesky_with_jitter(kr, 1e-10, 1e-5)
    if not bool(ok):
        raise ValueError(
            f"{name} is not positive semi-definite: K + eta I has no Cholesky factor even "
            "with relative jitter 1e-5 (check the kernel, or increase eta)"
        )
    return L
