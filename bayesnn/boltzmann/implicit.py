"""Implicit differentiation of a mean-field fixed point (custom VJP).

If :math:`q^* = g_\\theta(q^*)` with :math:`g_\\theta(q) = \\operatorname{clamp}(
\\operatorname{softmax}(W_\\theta q + b_\\theta))`, the implicit function theorem gives,
for an upstream cotangent :math:`\\bar q`,

.. math::

    (I - \\partial_q g)^T u = \\bar q, \\qquad
    \\bar\\theta = (\\partial_\\theta g)^T u .

The linear system is solved per example with GMRES or BiCGStab from
``jax.scipy.sparse.linalg`` using only vector-Jacobian products of the *undamped* map (whose
fixed point equals that of any damped solver), then its relative residual is checked. With
``I - W >= m I`` the matrix :math:`I - J_\\sigma W` has eigenvalues in ``[m/2, inf)``-like
positive range (:math:`J_\\sigma^{1/2} W J_\\sigma^{1/2} \\preceq (1 - m)/2`), so it is
non-singular. (Feng, Winston and Kolter solve the backward system with damped Anderson
iterations instead.)

References: Bai, Kolter and Koltun, "Deep equilibrium models", NeurIPS 2019; Winston and
Kolter, NeurIPS 2020; Feng, Winston and Kolter, TMLR 2023.
"""

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
from jax.scipy.sparse.linalg import bicgstab, gmres

from bayesnn._pytree import unravel_batched_like

__all__ = ["BackwardOptions", "implicit_fixed_point", "adjoint_solve"]


class BackwardOptions(NamedTuple):
    """Options of the adjoint solve (hashable, static).

    Attributes
    ----------
    method : {"gmres", "bicgstab"}
    tol : float
        Relative tolerance of the Krylov solver and of the residual check.
    maxiter : int
        Krylov iterations (GMRES: restarts of ``restart`` inner steps).
    restart : int
        GMRES subspace size.
    on_failure : {"warn", "nan", "ignore"}
        What to do if the checked residual exceeds ``10 * tol``: warn from the host, poison
        the gradient with NaN (so a training loop stops), or nothing.
    """

    method: str = "gmres"
    tol: float = 1e-4
    maxiter: int = 10
    restart: int = 20
    on_failure: str = "warn"


DEFAULT_BACKWARD = BackwardOptions()


def _warn(res, tol):
    warnings.warn(
        f"implicit backward: adjoint residual {float(res):.3g} exceeds {tol:.3g}; "
        "gradients are inaccurate",
        RuntimeWarning,
        stacklevel=2,
    )


def adjoint_solve(vjp_fn, cotangent, options=DEFAULT_BACKWARD):
    """Solve ``(I - J)^T u = cotangent`` for one example, given ``vjp_fn(u) = J^T u``.

    Parameters
    ----------
    vjp_fn : callable
        Vector-Jacobian product of the fixed-point map at the solution, on ``(N,)`` arrays.
    cotangent : array (N,)
    options : BackwardOptions

    Returns
    -------
    u : array (N,)
    residual : scalar
        ``||(I - J)^T u - cotangent|| / ||cotangent||`` (0 when the cotangent is 0).

    References
    ----------
    Bai, Kolter and Koltun, "Deep equilibrium models", NeurIPS 2019.
    """
    if options.method not in ("gmres", "bicgstab"):
        raise ValueError(f"options.method must be 'gmres' or 'bicgstab', got {options.method!r}")

    def matvec(u):
        return u - vjp_fn(u)

    # The system is linear: solve it for the unit cotangent and scale back. JAX's Krylov
    # solvers test breakdown against absolute thresholds, so a tiny cotangent (an example the
    # loss barely sees, |c| ~ 1e-8) otherwise stops them at the start (relative residual
    # |J^T c| / |c| > 1). From x0 = 0 the GMRES residual never exceeds |c|.
    nc = jnp.linalg.norm(cotangent)
    safe = jnp.where(nc > 0, nc, 1.0)
    unit = cotangent / safe
    if options.method == "gmres":
        u, _ = gmres(
            matvec,
            unit,
            x0=jnp.zeros_like(unit),
            tol=options.tol,
            atol=0.0,
            restart=options.restart,
            maxiter=options.maxiter,
            solve_method="incremental",
        )
    else:
        u, _ = bicgstab(
            matvec,
            unit,
            x0=jnp.zeros_like(unit),
            tol=options.tol,
            atol=0.0,
            maxiter=options.maxiter * options.restart,
        )
    res = jnp.where(nc > 0, jnp.linalg.norm(matvec(u) - unit), 0.0)
    return u * safe, res


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 5))
def implicit_fixed_point(map_fn, solve_fn, params, data, q0, options=DEFAULT_BACKWARD):
    """Fixed point ``q* = map_fn(params, data, q*)`` with gradients by implicit differentiation.

    Parameters
    ----------
    map_fn : callable
        ``(params, data, q) -> q`` the undamped mean-field map (clamping included).
    solve_fn : callable
        ``(params, data, q0) -> (q*, info)`` any solver of the same fixed point.
    params : pytree
        Differentiable parameters.
    data : pytree
        Inputs (clamp values, masks); gradients flow to floating leaves.
    q0 : pytree
        Starting point (no gradient).
    options : BackwardOptions
        Adjoint solver options (static).

    Returns
    -------
    q : pytree
        The solution.
    info : pytree
        The solver's info (not differentiated).

    References
    ----------
    Bai, Kolter and Koltun, NeurIPS 2019; Feng, Winston and Kolter, TMLR 2023.
    """
    return solve_fn(params, data, q0)


def _fwd(map_fn, solve_fn, params, data, q0, options):
    q, info = solve_fn(params, data, q0)
    return (q, info), (params, data, q, q0)


def _bwd(map_fn, solve_fn, options, res, cts):
    params, data, q, q0 = res
    ct_q = cts[0]

    def one(d, z, ct):
        def m1(zz):
            add = jax.tree_util.tree_map(lambda x: x[None], zz)
            return jax.tree_util.tree_map(lambda x: x[0], map_fn(params, d1, add))

        d1 = jax.tree_util.tree_map(lambda x: x[None], d)
        flat_z, unravel = jax.flatten_util.ravel_pytree(z)
        _, vjp_z = jax.vjp(lambda v: jax.flatten_util.ravel_pytree(m1(unravel(v)))[0], flat_z)
        return adjoint_solve(lambda u: vjp_z(u)[0], jax.flatten_util.ravel_pytree(ct)[0], options)

    u, resid = jax.vmap(one)(data, q, ct_q)
    worst = jnp.max(jnp.where(jnp.isfinite(resid), resid, jnp.inf))
    bad = worst > 10.0 * options.tol
    if options.on_failure == "nan":
        u = jnp.where(bad, jnp.nan, u)
    elif options.on_failure == "warn":
        jax.lax.cond(
            bad,
            lambda w: jax.debug.callback(partial(_warn, tol=10 * options.tol), w),
            lambda w: None,
            worst,
        )
    _, vjp_p = jax.vjp(lambda p, d: map_fn(p, d, q), params, data)
    g_params, g_data = vjp_p(unravel_batched_like(u, q))
    g_q0 = jax.tree_util.tree_map(jnp.zeros_like, q0)
    return g_params, g_data, g_q0


implicit_fixed_point.defvjp(_fwd, _bwd)
