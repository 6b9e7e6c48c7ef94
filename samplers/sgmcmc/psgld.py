"""Preconditioned SGLD with an RMSprop preconditioner (Li, Chen, Carlson, Carin, AAAI 2016).

.. math::

    V_t = \\beta V_{t-1} + (1-\\beta)\\, g_t \\odot g_t, \\qquad
    G_t = 1 / (\\lambda + \\sqrt{V_t / (1 - \\beta^t)}),

    \\theta_{t+1} = \\theta_t + h\\, G_t \\odot g_t + \\sqrt{2 T h\\, G_t} \\odot \\xi_t,

with ``g_t`` the stochastic gradient of the log posterior. The ``Gamma(theta)`` correction
term of the paper is dropped, as the paper recommends for small ``1 - beta``. ``V`` is
bias-corrected as in Adam: with ``V_0 = 0`` the first steps would otherwise be scaled by
``1/lambda`` and jump far. BlackJAX has
no preconditioned SGLD (its issue #289), hence this kernel.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel, tree_normal

__all__ = ["PSGLDState", "build_kernel", "psgld"]


class PSGLDState(NamedTuple):
    """Position and the running mean of squared gradients ``V``."""

    position: object
    square_avg: object
    count: jax.Array


def build_kernel(decay: float = 0.99, epsilon: float = 1e-5):
    """The pSGLD step with RMSprop decay ``beta = decay`` and damping ``lambda = epsilon``."""
    if not 0 < decay < 1:
        raise ValueError(f"decay must be in (0, 1), got {decay!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}")

    def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
        del logdensity, adapt
        square_avg = jax.tree.map(
            lambda v, g: decay * v + (1 - decay) * g * g, state.square_avg, logdensity_grad
        )
        count = state.count + 1
        correction = 1.0 - decay**count
        noise = tree_normal(rng_key, state.position)

        def update(x, v, g, n):
            precond = 1.0 / (epsilon + jnp.sqrt(v / correction))
            return (
                x + step_size * precond * g + jnp.sqrt(2 * temperature * step_size * precond) * n
            )

        position = jax.tree.map(update, state.position, square_avg, logdensity_grad, noise)
        return PSGLDState(position, square_avg, count), ()

    return step


@by_value
def psgld(decay: float = 0.99, epsilon: float = 1e-5) -> SGMCMCKernel:
    """pSGLD as an :class:`SGMCMCKernel`."""

    def init(position) -> PSGLDState:
        return PSGLDState(
            position, jax.tree.map(jnp.zeros_like, position), jnp.zeros((), jnp.float32)
        )

    return SGMCMCKernel(init, build_kernel(decay, epsilon), "psgld")
