"""Minibatch gradient estimators of the log posterior.

``value_and_grad(logdensity_fn)`` differentiates the minibatch log-density once.
``control_variates`` reduces the minibatch noise with a full-data gradient at a centring
point (Baker, Fearnhead, Fox, Nemeth 2019), as BlackJAX's ``control_variates`` does, but keeps
the log-density value for diagnostics. ``clip_by_global_norm`` bounds a gradient's norm.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from samplers.sgmcmc.base import tree_sq_norm

__all__ = ["value_and_grad", "control_variates", "clip_by_global_norm"]


def value_and_grad(logdensity_fn: Callable) -> Callable:
    """``(position, batch, *args) -> (logdensity, grad)``."""
    return jax.value_and_grad(logdensity_fn)


def control_variates(estimator: Callable, center, full_data, *args) -> Callable:
    """Control-variate gradient estimator centred at ``center`` (e.g. the MAP).

    .. math::

        \\hat g(\\theta) = \\nabla \\log p(\\hat\\theta \\mid \\mathcal D)
            + \\hat g_B(\\theta) - \\hat g_B(\\hat\\theta).

    ``estimator(position, batch, *args) -> (value, grad)`` is the plain minibatch estimator;
    the full-data gradient at the centre is computed once here.
    """
    _, full_grad = estimator(center, full_data, *args)

    def cv_estimator(position, batch, *more):
        value, grad = estimator(position, batch, *more)
        _, center_grad = estimator(center, batch, *more)
        grad = jax.tree.map(lambda f, g, c: f + g - c, full_grad, grad, center_grad)
        return value, grad

    return cv_estimator


def clip_by_global_norm(grad, max_norm):
    """Scale ``grad`` so that its global norm is at most ``max_norm``."""
    norm = jnp.sqrt(tree_sq_norm(grad))
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-12))
    return jax.tree.map(lambda g: g * scale.astype(g.dtype), grad)
