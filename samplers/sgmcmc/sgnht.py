"""Stochastic gradient Nose-Hoover thermostat (Ding et al., NeurIPS 2014), on BlackJAX.

.. math::

    p_{t+1} = (1 - \\xi_t h) p_t + h \\nabla \\log \\hat p(\\theta_t) + \\sqrt{h T(2\\alpha - hT\\beta)}\\,\\eta_t,
    \\quad \\theta_{t+1} = \\theta_t + h p_{t+1},
    \\quad \\xi_{t+1} = \\xi_t + h (\\|p_{t+1}\\|^2 / d - T),

the update of ``blackjax.sgmcmc.diffusions.sgnht`` in symplectic order (the position moves
with the new momentum; see :mod:`samplers.sgmcmc.sghmc` for why). The thermostat starts at
``init_xi`` exactly (``blackjax.sgnht.init`` turns ``init_xi=0.0`` into ``alpha``). SGNHT
needs a long burn-in or a start near the mode.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel, check_friction, tree_normal

__all__ = ["SGNHTState", "build_kernel", "sgnht"]


class SGNHTState(NamedTuple):
    """Position, momentum and thermostat variable ``xi``."""

    position: object
    momentum: object
    xi: jax.Array


def build_kernel(alpha: float = 0.01, beta: float = 0.0):
    """The SGNHT step."""
    check_friction(alpha, beta)

    def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
        del logdensity, adapt
        noise = tree_normal(rng_key, state.position)
        scale = jnp.sqrt(
            jnp.maximum(
                step_size * temperature * (2 * alpha - step_size * temperature * beta), 0.0
            )
        )
        momentum = jax.tree.map(
            lambda p, g, n: (1.0 - state.xi * step_size) * p + step_size * g + scale * n,
            state.momentum,
            logdensity_grad,
            noise,
        )
        position = jax.tree.map(lambda x, p: x + step_size * p, state.position, momentum)
        dim = sum(jnp.size(p) for p in jax.tree_util.tree_leaves(momentum))
        kinetic = sum(jnp.sum(p * p) for p in jax.tree_util.tree_leaves(momentum))
        xi = state.xi + step_size * (kinetic / dim - temperature)
        return SGNHTState(position, momentum, xi), ()

    return step


@by_value
def sgnht(alpha: float = 0.01, beta: float = 0.0, init_xi: float | None = None) -> SGMCMCKernel:
    """SGNHT as an :class:`SGMCMCKernel`; the thermostat starts at ``init_xi`` (default alpha)."""
    check_friction(alpha, beta)
    xi0 = alpha if init_xi is None else init_xi
    if not math.isfinite(float(xi0)):
        raise ValueError(f"init_xi must be finite, got {init_xi!r}")

    def init(position) -> SGNHTState:
        momentum = jax.tree.map(jnp.zeros_like, position)
        return SGNHTState(position, momentum, jnp.asarray(xi0, jnp.float32))

    return SGMCMCKernel(init, build_kernel(alpha, beta), "sgnht")
