"""Sliced Wasserstein-1 distance on function values: a critic-free alternative estimator.

.. math::

    SW_1(p, q) = E_{\\theta \\sim U(S^{m-1})} W_1(\\theta^\\top_\\# p, \\theta^\\top_\\# q),

estimated with ``P`` random directions; each 1-D W1 between two equal-size samples is the
mean absolute difference of the sorted projections (Bonneel et al. 2015; Deshpande et al.
2018). ``SW_1 <= W_1``; it needs no inner optimisation, so one prior step costs one sort.
Multi-output samples ``(n, m, k)`` are summed over outputs, as for the critic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bayesnn.functional_prior.critic import _rows

__all__ = ["sliced_w1"]


def sliced_w1(rng_key, f_p, f_q, num_projections: int = 256):
    """Monte Carlo sliced W1 between samples ``f_p`` and ``f_q`` of equal shape.

    Parameters
    ----------
    rng_key
        Key for the random directions.
    f_p, f_q
        ``(n, m)`` or ``(n, m, k)`` function values.
    num_projections
        Number of random unit directions.
    """
    rp, k = _rows(f_p)
    rq, _ = _rows(f_q)
    if rp.shape != rq.shape:
        raise ValueError(f"f_p and f_q must have the same shape, got {f_p.shape}, {f_q.shape}")
    if k > 1:
        rp = rp.reshape(k, -1, rp.shape[-1])
        rq = rq.reshape(k, -1, rq.shape[-1])
    else:
        rp, rq = rp[None], rq[None]
    d = jax.random.normal(rng_key, (rp.shape[-1], num_projections), dtype=rp.dtype)
    d = d / jnp.linalg.norm(d, axis=0, keepdims=True)
    sp = jnp.sort(rp @ d, axis=1)
    sq = jnp.sort(rq @ d, axis=1)
    return jnp.sum(jnp.mean(jnp.abs(sp - sq), axis=(1, 2)))
