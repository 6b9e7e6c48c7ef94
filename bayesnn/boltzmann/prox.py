"""Proximal operator of the negative-entropy activation on the probability simplex.

The mean-field activation of a categorical unit is the proximal operator of

.. math::

    f(z) = \\sum_i z_i \\log z_i - \\tfrac12 \\lVert z \\rVert^2 + I_{\\Delta}(z),

so that :math:`\\operatorname{prox}^1_f(y) = \\operatorname{softmax}(y)` and, for a damping
:math:`0 < \\alpha < 1`,

.. math::

    \\operatorname{prox}^\\alpha_f(y) = \\arg\\min_{z \\in \\Delta}
    \\tfrac12 \\lVert z - y \\rVert^2 + \\alpha f(z),

whose KKT conditions are :math:`(1 - \\alpha) z_i + \\alpha \\log z_i = y_i + \\nu - \\alpha`
with a multiplier :math:`\\nu` fixed by :math:`\\sum_i z_i = 1`. Each :math:`z_i(\\nu)` is a
Lambert-W value (solved by Halley steps in log space) and :math:`\\nu` by Newton steps started
to the right of the root, where the sum is convex and increasing in :math:`\\nu`, so Newton
is monotone. Everything is a fixed number of vectorised steps (no host syncs).

References: Winston and Kolter, "Monotone operator equilibrium networks", NeurIPS 2020;
Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["prox_entropy", "prox_entropy_jacobian_vp"]


def _log_lambert_exp(t, num_halley):
    """Solve ``u + exp(u) = t`` for ``u`` (``u = log W0(exp(t))``), elementwise."""
    big = t > 1.0
    tb = jnp.where(big, t, 2.0)
    lt = jnp.log(tb)
    u_big = jnp.log(tb - lt + lt / tb)
    u_small = t - jnp.logaddexp(0.0, t)
    u = jnp.where(big, u_big, u_small)

    def body(_, u):
        eu = jnp.exp(u)
        h = u + eu - t
        dh = 1.0 + eu
        return u - 2.0 * h * dh / (2.0 * dh * dh - h * eu)

    return jax.lax.fori_loop(0, num_halley, body, u)


def _prox_forward(y, alpha, num_newton, num_halley):
    beta = (1.0 - alpha) / alpha
    log_beta = jnp.log(beta)

    def z_of(nu):
        t = (y + nu - alpha) / alpha + log_beta
        u = _log_lambert_exp(t, num_halley)
        return jnp.exp(u - log_beta)

    # Right of the root: the largest entry equals 1 there, so sum z >= 1.
    nu0 = 1.0 - jnp.max(y, axis=-1, keepdims=True)

    def newton(_, nu):
        z = z_of(nu)
        g = z / (alpha + (1.0 - alpha) * z)
        phi = jnp.sum(z, axis=-1, keepdims=True) - 1.0
        return nu - phi / jnp.sum(g, axis=-1, keepdims=True)

    nu = jax.lax.fori_loop(0, num_newton, newton, nu0)
    return z_of(nu)


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def prox_entropy(y, alpha=1.0, num_newton=10, num_halley=3):
    """Damped negative-entropy prox on the simplex, blockwise over the last axis.

    .. math::

        \\operatorname{prox}^\\alpha_f(y) = \\arg\\min_{z \\in \\Delta}
        \\tfrac12 \\lVert z - y \\rVert^2 + \\alpha \\Big(\\sum_i z_i \\log z_i
        - \\tfrac12 \\lVert z \\rVert^2\\Big)

    Parameters
    ----------
    y : array (..., k)
        Inputs; each slice along the last axis is one categorical variable.
    alpha : float in (0, 1]
        Damping (static). ``alpha = 1`` returns ``softmax(y)`` exactly; ``alpha -> 0``
        tends to the Euclidean projection onto the simplex (sparsemax).
    num_newton, num_halley : int
        Fixed numbers of Newton steps on the multiplier and Halley steps per Lambert-W
        evaluation (static).

    Returns
    -------
    z : array (..., k)
        Points of the simplex. Gradients use the implicit-function Jacobian
        :math:`J = \\operatorname{diag}(g) - g g^T / \\sum_i g_i`,
        :math:`g_i = z_i / (\\alpha + (1 - \\alpha) z_i)`.

    References
    ----------
    Winston and Kolter, NeurIPS 2020; Feng, Winston and Kolter, TMLR 2023.
    """
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if alpha == 1.0:
        return jax.nn.softmax(y, axis=-1)
    return _prox_forward(y, alpha, num_newton, num_halley)


def _prox_fwd(y, alpha, num_newton, num_halley):
    z = prox_entropy(y, alpha, num_newton, num_halley)
    return z, z


def prox_entropy_jacobian_vp(z, v, alpha):
    """Jacobian-vector product of :func:`prox_entropy` at output ``z`` (symmetric Jacobian).

    .. math::

        J v = g \\odot v - g \\, \\frac{g^T v}{\\sum_i g_i},
        \\qquad g_i = \\frac{z_i}{\\alpha + (1 - \\alpha) z_i}

    At ``alpha = 1`` this is the softmax Jacobian ``diag(z) - z z^T``.

    Parameters
    ----------
    z : array (..., k)
        Output of the prox.
    v : array (..., k)
        Vector (the Jacobian is symmetric, so this is also the VJP).
    alpha : float
        Damping used to compute ``z``.

    Returns
    -------
    array (..., k)

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    g = z / (alpha + (1.0 - alpha) * z)
    sg = jnp.sum(g, axis=-1, keepdims=True)
    return g * v - g * jnp.sum(g * v, axis=-1, keepdims=True) / sg


def _prox_bwd(alpha, num_newton, num_halley, z, ct):
    return (prox_entropy_jacobian_vp(z, ct, float(alpha)),)


prox_entropy.defvjp(_prox_fwd, _prox_bwd)
