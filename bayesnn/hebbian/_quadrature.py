r"""Gaussian expectations of integrands with one kink (sign, tanh(beta h), |h|, erf(y h)).

Gauss-Hermite nodes cannot resolve :math:`\mathrm{sign}(z - z_0)` or :math:`\tanh(\beta(z -
z_0))` at low temperature: the error is of the order of the weight between two nodes near
:math:`z_0`. Here :math:`E f(z)`, :math:`z \sim N(0, 1)`, is computed by composite
Gauss-Legendre quadrature on panels whose breakpoints are a unit grid on
:math:`[-z_{\max}, z_{\max}]` plus the kink :math:`z_0` and a geometric sequence
:math:`z_0 \pm 4^{-k}`, :math:`k = 0..K-1` (the panels shrink towards the kink). A function
that is smooth on each side of the kink (``sign`` exactly, ``tanh(beta (z - z0))`` for every
``beta`` down to a width :math:`4^{-(K-1)}`) is then integrated to high accuracy; the kink may
be a traced value (the breakpoints are sorted in the program). Gauss-Legendre nodes and
weights come from :func:`numpy.polynomial.legendre.leggauss` (stable for any order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Z_MAX", "normal_nodes", "normal_nodes_batch", "check_nodes_per_panel"]

Z_MAX = 8.5  # N(0, 1) tail mass beyond is 2e-17
_NUM_REFINE = 8  # kink offsets 4^0 .. 4^-7 (6e-5)
_UNIT_GRID = np.linspace(-Z_MAX, Z_MAX, 18)


def check_nodes_per_panel(nodes_per_panel) -> int:
    """Validate the Gauss-Legendre order per panel (an integer in [2, 64])."""
    if int(nodes_per_panel) != nodes_per_panel or not 2 <= int(nodes_per_panel) <= 64:
        raise ValueError(f"nodes_per_panel must be an integer in [2, 64], got {nodes_per_panel}")
    return int(nodes_per_panel)


def normal_nodes(kink, nodes_per_panel: int = 6):
    r"""Nodes and weights for :math:`E f(z)`, :math:`z \sim N(0, 1)`, with a breakpoint at
    ``kink``.

    Parameters
    ----------
    kink : float or scalar Array
        Location of the kink (may be traced; ``+-inf`` or values beyond :math:`\pm z_{\max}`
        mean no kink in range).
    nodes_per_panel : int
        Gauss-Legendre order on each panel (static).

    Returns
    -------
    z, w : Array, shape (num_nodes(nodes_per_panel),)
        Nodes and normalised weights (``sum(w) = 1``); zero-width panels carry zero weight.
    """
    x, wx = np.polynomial.legendre.leggauss(int(nodes_per_panel))
    kink = jnp.clip(jnp.nan_to_num(jnp.asarray(kink, jnp.float32)), -Z_MAX, Z_MAX)
    offsets = jnp.asarray(4.0 ** -np.arange(_NUM_REFINE), jnp.float32)
    breaks = jnp.concatenate(
        [jnp.asarray(_UNIT_GRID, jnp.float32), kink - offsets, kink[None], kink + offsets]
    )
    breaks = jnp.sort(jnp.clip(breaks, -Z_MAX, Z_MAX))
    lo, hi = breaks[:-1, None], breaks[1:, None]
    half = 0.5 * (hi - lo)
    z = lo + half * (1.0 + jnp.asarray(x, jnp.float32)[None, :])
    w = half * jnp.asarray(wx, jnp.float32)[None, :] * jnp.exp(-0.5 * z**2)
    z, w = z.reshape(-1), w.reshape(-1)
    return z, w / jnp.sum(w)


def normal_nodes_batch(kinks, nodes_per_panel: int = 6):
    """:func:`normal_nodes` for an array of kinks: ``z, w`` of shape ``kinks.shape + (n,)``."""
    kinks = jnp.asarray(kinks, jnp.float32)
    z, w = jax.vmap(lambda k: normal_nodes(k, nodes_per_panel))(kinks.reshape(-1))
    return z.reshape(kinks.shape + z.shape[-1:]), w.reshape(kinks.shape + w.shape[-1:])
