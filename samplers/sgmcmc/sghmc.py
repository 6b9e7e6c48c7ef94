"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox and Guestrin, ICML 2014).

Symplectic-Euler steps of the SGHMC diffusion with friction ``alpha`` and gradient-noise
estimate ``beta``, in BlackJAX's parameterisation (Ma, Chen and Fox 2015 scaling):

.. math::

    p_{t+1} = (1 - \\alpha h) p_t + h \\nabla \\log \\hat p(\\theta_t)
        + \\sqrt{h T (2\\alpha - h T \\beta)}\\, \\xi_t, \\qquad
    \\theta_{t+1} = \\theta_t + h p_{t+1}.

The momentum is carried across steps, each step on a fresh minibatch (one gradient per
step). ``blackjax.sgmcmc.diffusions.sghmc`` moves the position with the *old* momentum
(explicit Euler), which is only stable because ``blackjax.sghmc`` redraws the momentum at
every call; with a persistent momentum it grows by ``sqrt(1 + h^2 k)`` per step on a
quadratic of curvature ``k``, hence the reordered update here.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel, check_friction, tree_normal

__all__ = ["SGHMCState", "init", "build_kernel", "sghmc"]


class SGHMCState(NamedTuple):
    """Position and momentum."""

    position: object
    momentum: object


def init(position, rng_key=None) -> SGHMCState:
    """Zero momentum (or ``N(0, I)`` momentum when ``rng_key`` is given)."""
    if rng_key is None:
        momentum = jax.tree.map(jnp.zeros_like, position)
    else:
        momentum = tree_normal(rng_key, position)
    return SGHMCState(position, momentum)


def build_kernel(alpha: float = 0.01, beta: float = 0.0):
    """The SGHMC step with friction ``alpha`` and noise estimate ``beta``."""
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
            lambda p, g, n: (1.0 - alpha * step_size) * p + step_size * g + scale * n,
            state.momentum,
            logdensity_grad,
            noise,
        )
        position = jax.tree.map(lambda x, p: x + step_size * p, state.position, momentum)
        return SGHMCState(position, momentum), ()

    return step


@by_value
def sghmc(alpha: float = 0.01, beta: float = 0.0) -> SGMCMCKernel:
    """SGHMC as an :class:`SGMCMCKernel`."""
    return SGMCMCKernel(init, build_kernel(alpha, beta), "sghmc")
