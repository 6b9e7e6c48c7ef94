"""Stochastic gradient Langevin dynamics (Welling and Teh, ICML 2011), on BlackJAX.

.. math::

    \\theta_{t+1} = \\theta_t + h \\nabla \\log \\hat p(\\theta_t) + \\sqrt{2 T h}\\, \\xi_t,
    \\qquad \\xi_t \\sim N(0, I),

with BlackJAX's Euler solver ``blackjax.sgmcmc.diffusions.overdamped_langevin``.
"""

from __future__ import annotations

from typing import NamedTuple

from blackjax.sgmcmc.diffusions import overdamped_langevin

from samplers._memo import by_value
from samplers.sgmcmc.base import SGMCMCKernel

__all__ = ["SGLDState", "init", "build_kernel", "sgld"]


class SGLDState(NamedTuple):
    """SGLD state: the position only."""

    position: object


def init(position) -> SGLDState:
    """Initial state."""
    return SGLDState(position)


def build_kernel():
    """The SGLD step (see module docstring)."""
    integrator = overdamped_langevin()

    def step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt):
        del logdensity, adapt
        position = integrator(rng_key, state.position, logdensity_grad, step_size, temperature)
        return SGLDState(position), ()

    return step


@by_value
def sgld() -> SGMCMCKernel:
    """SGLD as an :class:`SGMCMCKernel`."""
    return SGMCMCKernel(init, build_kernel(), "sgld")
