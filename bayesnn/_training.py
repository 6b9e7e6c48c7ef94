"""Gradient-based optimisation with optax inside ``lax.scan`` (one copy for the package).

:func:`apply_gradients` is one optax update ``theta <- theta + update(g)`` for given gradients
``g``; :func:`gradient_step` computes ``g = grad L(theta)`` and applies it;
:func:`minimize` runs it over the leading axis of ``xs`` (per-step keys, step indices, ...)
as one ``lax.scan`` and returns the loss trace. Both are pure and traceable, so the callers
compile a whole optimisation into one program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

__all__ = ["apply_gradients", "gradient_step", "minimize"]


def apply_gradients(optimizer: optax.GradientTransformation, params, opt_state, grads):
    """One optax update of ``params`` with the given ``grads``: ``(params, opt_state)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def gradient_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    params,
    opt_state,
    *args,
    has_aux: bool = False,
):
    """One optax step on ``loss_fn(params, *args)``.

    Returns
    -------
    params, opt_state, value
        Updated parameters and optimiser state, and the loss before the step (with
        ``has_aux``, the pair ``(loss, aux)``).
    """
    value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
    params, opt_state = apply_gradients(optimizer, params, opt_state, grads)
    return params, opt_state, value


def minimize(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    params,
    xs: Any = None,
    *,
    length: int | None = None,
):
    """Minimise ``loss_fn(params, x)`` by one optax step per element ``x`` of ``xs``.

    Parameters
    ----------
    loss_fn
        ``loss_fn(params, x) -> scalar``; ``x`` is ``None`` when ``xs`` is ``None``.
    optimizer
        An optax gradient transformation (initialised here at ``params``).
    params
        Initial parameters (a pytree).
    xs
        Per-step inputs, scanned over their leading axis (``None``: give ``length``).
    length
        Number of steps when ``xs`` is ``None``.

    Returns
    -------
    params, losses
        Final parameters and the ``(num_steps,)`` loss before each step.
    """

    def step(carry, x):
        p, s = carry
        p, s, value = gradient_step(loss_fn, optimizer, p, s, x)
        return (p, s), value

    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), xs, length=length)
    return params, losses
