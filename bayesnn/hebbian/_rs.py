r"""The replica-symmetric maps of the supervised rule, one copy each: low storage
(:func:`low_storage_map`, :func:`low_storage_f`; used by
:func:`bayesnn.hebbian.theory.solve_low_storage` and the (T, rho) diagram) and high storage
(:func:`iterate`; used by :func:`bayesnn.hebbian.theory.high_storage_rs`, the free energy and
the (T, alpha) diagram).

Low storage: :math:`h = \frac P2 n^{P-1} p`, :math:`n' = E[p\tanh\beta h]`,
:math:`m = E\tanh\beta h`, :math:`q = E\tanh^2\beta h`, :math:`f = \frac{P-1}2 n^P -
\beta^{-1}E\log 2\cosh\beta h` (``beta = inf`` allowed: ``tanh -> sign``,
``T log 2cosh -> |h|``).

High storage: with
:math:`p` from a law (atoms ``vals``, weights ``w``) and :math:`z \sim N(0, 1)`, the
effective field is :math:`h = a\,p + b\,z` with

- P = 2 (:math:`K = \alpha N`, Amit-Gutfreund-Sompolinsky): :math:`a = n`,
  :math:`b = \sqrt{\alpha q}/(1 - C)`, :math:`C = \beta(1 - q)`;
- P > 2 (:math:`K = \alpha N^{P-1}`): :math:`a = \frac P2 n^{P-1}`,
  :math:`b = \sqrt{\alpha\gamma q^{P-1}}`, :math:`\gamma = (P/2)^2 c_P`.

For each atom ``p`` the ``z`` expectation uses :func:`~._quadrature.normal_nodes` with the
kink of :math:`\tanh\beta h` at :math:`z = -a p/b`, so the map stays accurate as
:math:`T \to 0`. The iteration runs on :math:`(n, u)` with :math:`u = 1 - q` computed as
:math:`E\,\mathrm{sech}^2\beta h` (no cancellation in :math:`1 - E\tanh^2` near
:math:`q = 1`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._quadrature import normal_nodes_batch

__all__ = [
    "Moments",
    "field_coefficients",
    "moments",
    "iterate",
    "low_storage_map",
    "low_storage_f",
]


def _tanh_beta(beta, h):
    """tanh(beta h), with beta = inf giving sign(h)."""
    inf = jnp.isinf(beta)
    return jnp.where(inf, jnp.sign(h), jnp.tanh(jnp.where(inf, 0.0, beta) * h))


def _t_log2cosh(beta, h):
    """T log 2cosh(beta h) (-> |h| at T = 0)."""
    inf = jnp.isinf(beta)
    b = jnp.where(inf, 1.0, beta)
    return jnp.where(inf, jnp.abs(h), jnp.logaddexp(b * h, -b * h) / b)


def low_storage_map(n, beta, order: int, law):
    """One low-storage RS map: ``(E p t, E t, E t^2)`` with ``t = tanh(beta P/2 n^(P-1) p)``."""
    vals, w = law
    t = _tanh_beta(beta, 0.5 * order * n ** (order - 1) * vals)
    return jnp.sum(w * vals * t), jnp.sum(w * t), jnp.sum(w * t**2)


def low_storage_f(n, beta, order: int, law):
    """Low-storage RS free energy ``(P-1)/2 n^P - T E log 2cosh(beta P/2 n^(P-1) p)``."""
    vals, w = law
    h = 0.5 * order * n ** (order - 1) * vals
    return 0.5 * (order - 1) * n**order - jnp.sum(w * _t_log2cosh(beta, h))


class Moments(NamedTuple):
    """Expectations over ``(p, z)`` of functions of :math:`t = \\tanh\\beta h`."""

    n: jax.Array  # E p t
    m: jax.Array  # E t
    u: jax.Array  # E sech^2 = 1 - q
    log2cosh: jax.Array  # E log 2cosh(beta h) / beta


def field_coefficients(n, u, beta, alpha, order: int, gamma: float):
    """``(a, b)`` of the effective field :math:`h = a p + b z` (module docstring)."""
    q = 1.0 - u
    if order == 2:
        one_c = jnp.maximum(1.0 - beta * u, 1e-6)
        return n, jnp.sqrt(alpha * jnp.maximum(q, 0.0)) / one_c
    return 0.5 * order * n ** (order - 1), jnp.sqrt(
        alpha * gamma * jnp.maximum(q, 0.0) ** (order - 1)
    )


def _sech2(x):
    ax = jnp.abs(x)
    return 4.0 * jnp.exp(-2.0 * ax) / (1.0 + jnp.exp(-2.0 * ax)) ** 2


def moments(a, b, beta, law, nodes_per_panel: int) -> Moments:
    """Expectations of ``p t``, ``t``, ``sech^2`` and ``log 2cosh / beta`` at ``h = a p + b z``.

    The quadrature nodes follow the kink but carry no gradient (a fixed rule per call), so
    derivatives with respect to ``a, b`` are quadratures of the derivatives.
    """
    vals, w = law
    b_pos = b > 0
    kinks = jnp.where(b_pos, -a * vals / jnp.where(b_pos, b, 1.0), jnp.inf)
    z, wz = normal_nodes_batch(jax.lax.stop_gradient(kinks), nodes_per_panel)
    x = beta * (a * vals[:, None] + b * z)
    ww = w[:, None] * wz
    t = jnp.tanh(x)
    ax = jnp.abs(x)
    l2c = (ax + jnp.log1p(jnp.exp(-2.0 * ax))) / beta
    return Moments(
        jnp.sum(ww * vals[:, None] * t),
        jnp.sum(ww * t),
        jnp.sum(ww * _sech2(x)),
        jnp.sum(ww * l2c),
    )


def iterate(
    n0, u0, beta, alpha, order, gamma, law, num_iter, damping, nodes_per_panel, retrieval=True
):
    """Damped fixed-point iteration of :math:`(n, u = 1 - q)`; ``retrieval=False`` holds
    ``n = 0`` (spin-glass / paramagnetic branch).

    Returns
    -------
    n, m, q, residual : Array
        The iterate, ``m = E tanh`` at it, ``q = 1 - u`` and ``|n' - n| + |u' - u|`` of one
        more (undamped) map.
    """

    def one(n, u):
        a, b = field_coefficients(n, u, beta, alpha, order, gamma)
        return moments(a, b, beta, law, nodes_per_panel)

    def body(_, nu):
        n, u = nu
        mo = one(n, u)
        n_new = mo.n if retrieval else jnp.zeros_like(n)
        return damping * n + (1 - damping) * n_new, damping * u + (1 - damping) * mo.u

    n, u = jax.lax.fori_loop(0, num_iter, body, (jnp.asarray(n0), jnp.asarray(u0)))
    mo = one(n, u)
    resid = jnp.abs(mo.n - n) * retrieval + jnp.abs(mo.u - u)
    return n, mo.m, 1.0 - u, resid
