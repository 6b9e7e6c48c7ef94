"""SG-MCMC on BlackJAX: kernels, schedules, gradient estimators and one multi-chain driver.

Example
-------
>>> import jax, jax.numpy as jnp
>>> from samplers import sgmcmc
>>> x = jax.random.normal(jax.random.key(0), (1000,)) + 2.0
>>> def logdensity(theta, batch, data_size):
...     return -0.5 * theta**2 - 0.5 * data_size * jnp.mean((batch - theta) ** 2)
>>> result = sgmcmc.sample(jax.random.key(1), sgmcmc.sgld(), logdensity, x,
...                        jnp.zeros(4), num_samples=100, batch_size=100,
...                        step_size=1e-4, num_burnin=200, thinning=5, progress_bar=False)
>>> result.positions.shape
(4, 100)

Kernels: :func:`sgld`, :func:`sghmc`, :func:`sgnht` (BlackJAX's diffusions), :func:`psgld`
(RMSprop-preconditioned SGLD), :func:`adaptive_sghmc` (Springenberg et al. 2016); BlackJAX's
own ``blackjax.sgld`` and ``blackjax.sghmc`` run as they are (:func:`blackjax_kernel`).
A fixed diagonal mass for any of them, as a change of variables: :class:`DiagonalMass`
(:mod:`samplers.sgmcmc.preconditioning`).
"""

from samplers.sgmcmc import schedules
from samplers.sgmcmc.adaptive_sghmc import adaptive_sghmc
from samplers.sgmcmc.base import SGMCMCKernel
from samplers.sgmcmc.blackjax_kernels import BlackJAXKernel, blackjax_kernel
from samplers.sgmcmc.csgld import csgld
from samplers.sgmcmc.driver import DivergenceError, DriverState, SampleResult, SGMCMCInfo, sample
from samplers.sgmcmc.gradients import clip_by_global_norm, control_variates, value_and_grad
from samplers.sgmcmc.preconditioning import DiagonalMass, empirical_fisher_diagonal
from samplers.sgmcmc.psgld import psgld
from samplers.sgmcmc.sghmc import sghmc
from samplers.sgmcmc.sgld import sgld
from samplers.sgmcmc.sgnht import sgnht

__all__ = [
    "BlackJAXKernel",
    "DiagonalMass",
    "DivergenceError",
    "DriverState",
    "SGMCMCInfo",
    "SGMCMCKernel",
    "SampleResult",
    "adaptive_sghmc",
    "blackjax_kernel",
    "clip_by_global_norm",
    "control_variates",
    "csgld",
    "empirical_fisher_diagonal",
    "psgld",
    "sample",
    "schedules",
    "sghmc",
    "sgld",
    "sgnht",
    "value_and_grad",
]
