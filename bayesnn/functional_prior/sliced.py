"""Sliced Wasserstein-1 distance on function values: a critic-free alternative estimator.

.. math::

    SW_1(p, q) = E_{\\theta \\sim U(S^{m-1})} W_1(\\theta^\\top_\\# p, \\theta^\\top_\\# q),

estimated with ``P`` random directions; each 1-D W1 between two equal-size samples is the
mean absolute difference of the sorted projections (Bonneel et al. 2015; Deshpande et al.
2018). ``SW_1 <= W_1``; it needs no inner optimisation, so one prior step costs one sort.
Multi-output samples ``(n, m, k)`` are summed over outputs, as for the critic.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesnn.functional_prior.critic import output_rows

__all__ = ["sliced_w1", "SlicedW1"]


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
    rp, k = output_rows(f_p)
    rq, _ = output_rows(f_q)
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


class SlicedW1(NamedTuple):
    """The sliced W1 estimator of :func:`~bayesnn.functional_prior.fit_functional_prior`.

    No critic: each prior iteration minimises :func:`sliced_w1` with ``num_projections``
    random directions.
    """

    num_projections: int = 256

    def resolved(self) -> SlicedW1:
        """Checked settings."""
        if not isinstance(self.num_projections, int) or self.num_projections < 1:
            raise ValueError(
                f"SlicedW1.num_projections must be a positive int, got {self.num_projections!r}"
            )
        return self

    def num_steps(self, iteration: int) -> int:
        """No inner steps."""
        del iteration
        return 0

    def init(self, rng_key, num_points: int):
        """No state."""
        del rng_key, num_points

    def train(self, state, sample_bnn, f_gp, rng_key, reset_key, num_steps):
        """Nothing to train: the state stays ``None``, loss and penalty are 0."""
        del state, sample_bnn, f_gp, rng_key, reset_key, num_steps
        return None, (jnp.zeros(()), jnp.zeros(()))

    def distance(self, state, rng_key, f_p, f_q):
        """:func:`sliced_w1` with directions from ``rng_key``."""
        del state
        return sliced_w1(rng_key, f_p, f_q, self.num_projections)
