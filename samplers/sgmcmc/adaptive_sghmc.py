"""Scale-adapted SGHMC (Springenberg, Klein, Falkner, Hutter, NeurIPS 2016).

The sampler of the functional-prior paper (Tran et al. 2022). With ``g_t`` the stochastic
gradient of the *negative* log posterior, per parameter and during burn-in only
(``adapt`` true):

.. math::

    r = 1/(\\tau + 1), \\quad \\tau \\leftarrow \\tau(1 - \\bar g^2 / \\hat v) + 1, \\quad
    \\bar g \\leftarrow (1 - r)\\bar g + r g_t, \\quad \\hat v \\leftarrow (1-r)\\hat v + r g_t^2,

then with ``M^{-1} = 1/(\\sqrt{\\hat v} + \\epsilon)``, learning rate ``h`` and momentum decay
``c`` (``mdecay``):

.. math::

    m \\leftarrow m - h^2 M^{-1} g_t - c\\, m + \\mathcal N\\big(0,\\; \\max(2 T h^2 c M^{-1} - h^4, 10^{-16})\\big),
    \\qquad \\theta \\leftarrow \\theta + m .

Not in BlackJAX; written here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel, tree_normal

__all__ = ["AdaptiveSGHMCState", "build_kernel", "adaptive_sghmc"]


class AdaptiveSGHMCState(NamedTuple):
    """Position, momentum and the per-parameter adaptation statistics."""

    position: object
    momentum: object
    tau: object
    grad_avg: object
    square_avg: object


def build_kernel(mdecay: float = 0.05, epsilon: float = 1e-16):
    """The scale-adapted SGHMC step (``step_size`` is the learning rate ``h``)."""
    if not 0 < mdecay < 1:
        raise ValueError(f"mdecay must be in (0, 1), got {mdecay!r}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be in (0, 1), got {epsilon!r}")

    def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
        del logdensity
        grad = jax.tree.map(jnp.negative, logdensity_grad)

        def adapt_stats(tau, g_avg, v_avg, g):
            r = 1.0 / (tau + 1.0)
            tau_new = tau - tau * g_avg * g_avg / (v_avg + epsilon) + 1.0
            g_new = g_avg - g_avg * r + r * g
            v_new = v_avg - v_avg * r + r * g * g
            return (
                jnp.where(adapt, tau_new, tau),
                jnp.where(adapt, g_new, g_avg),
                jnp.where(adapt, v_new, v_avg),
            )

        stats = jax.tree.map(adapt_stats, state.tau, state.grad_avg, state.square_avg, grad)
        treedef = jax.tree_util.tree_structure(state.position)
        tau, grad_avg, square_avg = (
            jax.tree_util.tree_unflatten(treedef, [s[i] for s in treedef.flatten_up_to(stats)])
            for i in range(3)
        )
        noise = tree_normal(rng_key, state.position)

        def move(m, v, g, n):
            minv = 1.0 / (jnp.sqrt(v) + epsilon)
            var = 2.0 * temperature * step_size**2 * mdecay * minv - step_size**4
            sigma = jnp.sqrt(jnp.maximum(var, 1e-16))
            return m - step_size**2 * minv * g - mdecay * m + sigma * n

        momentum = jax.tree.map(move, state.momentum, square_avg, grad, noise)
        position = jax.tree.map(jnp.add, state.position, momentum)
        return AdaptiveSGHMCState(position, momentum, tau, grad_avg, square_avg), ()

    return step


@by_value
def adaptive_sghmc(mdecay: float = 0.05, epsilon: float = 1e-16) -> SGMCMCKernel:
    """Scale-adapted SGHMC as an :class:`SGMCMCKernel` (statistics start at 1, momentum 0)."""

    def init(position) -> AdaptiveSGHMCState:
        ones = jax.tree.map(jnp.ones_like, position)
        return AdaptiveSGHMCState(
            position, jax.tree.map(jnp.zeros_like, position), ones, ones, ones
        )

    return SGMCMCKernel(init, build_kernel(mdecay, epsilon), "adaptive_sghmc")
