"""The kernel protocol shared by every SG-MCMC algorithm in :mod:`samplers.sgmcmc`.

A kernel is a pair of pure functions, in the style of BlackJAX's ``SamplingAlgorithm``:

* ``init(position) -> state`` where ``state.position`` is the parameter pytree;
* ``step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt)
  -> (state, info)``, ``info`` a NamedTuple of the kernel's own diagnostics (``()`` when it
  has none), as BlackJAX's kernels return.

``logdensity`` and ``logdensity_grad`` are the minibatch estimate of the log posterior and its
gradient at ``state.position`` (the driver computes them once per step, so every kernel costs
one gradient evaluation). ``step_size`` and ``temperature`` are traced per-step values, so
schedules need no recompilation; ``temperature = 0`` turns a sampler into its optimiser (the
exploration phase of cyclical SG-MCMC). ``adapt`` is a traced boolean that is true during
burn-in, for kernels that adapt a preconditioner.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["SGMCMCKernel", "check_friction", "tree_normal", "tree_sq_norm"]


class SGMCMCKernel(NamedTuple):
    """An SG-MCMC algorithm: ``init(position) -> state`` and ``step(...) -> (state, info)``.

    Attributes
    ----------
    init
        Builds the kernel state from a position pytree.
    step
        ``step(rng_key, state, logdensity, logdensity_grad, step_size, temperature, adapt)``.
    name
        Name used in diagnostics.
    """

    init: Callable
    step: Callable
    name: str

    def bind(self, grad_fn: Callable) -> Callable:
        """The step for one minibatch, given the minibatch gradient estimator ``grad_fn``
        (``position -> gradient``) at positions other than the current one: ``step`` itself,
        since these kernels use only the gradient at the current position. Kernels that
        integrate several steps per minibatch (BlackJAX's SGHMC,
        :mod:`samplers.sgmcmc.blackjax_kernels`) use ``grad_fn``."""
        del grad_fn
        return self.step


def tree_normal(rng_key, tree):
    """Standard normal noise with the structure and dtypes of ``tree`` (no ravel copy)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(rng_key, len(leaves))
    noise = [
        jax.random.normal(k, jnp.shape(x), dtype=jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, noise)


def tree_sq_norm(tree) -> jax.Array:
    """Squared Euclidean norm of a pytree."""
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree))


def check_friction(alpha, beta) -> None:
    """Friction ``alpha`` must be positive and finite, the noise estimate ``beta`` finite and
    ``>= 0`` (NaN fails both)."""
    if not (math.isfinite(float(alpha)) and float(alpha) > 0):
        raise ValueError(f"alpha (friction) must be positive and finite, got {alpha!r}")
    if not (math.isfinite(float(beta)) and float(beta) >= 0):
        raise ValueError(f"beta (gradient-noise estimate) must be finite and >= 0, got {beta!r}")
