"""Mean-field fixed-point solvers: damped forward-backward, Anderson, Peaceman-Rachford.

The mean-field fixed point of a pairwise categorical model is a zero of the monotone
inclusion :math:`0 \\in (I - W) q - b + \\partial f(q)` with ``f`` the negative-entropy
activation of :mod:`bayesnn.boltzmann.prox`; clamped variables have ``f`` equal to the
indicator of their observed one-hot, so their prox just writes the observation back.

- Forward-backward (FB): :math:`q^+ = \\operatorname{prox}^\\alpha_f((1 - \\alpha) q
  + \\alpha (W q + b))`; ``alpha = 1`` is plain mean field.
- Anderson acceleration of the FB map (memory ``m``, ridge ``lambda``).
- Automatic fallback: if Anderson fails (any example unconverged or non-finite) the
  unconverged examples are re-solved from their start by damped FB or by PR (which
  converges for any damping under the monotone constraint), and ``info.fallback`` says so.
- Peaceman-Rachford (PR): :math:`\\hat u = 2q - u`,
  :math:`\\hat q = (I + \\alpha (I - W))^{-1} (\\hat u + \\alpha b)`,
  :math:`u = 2 \\hat q - \\hat u`, :math:`q = \\operatorname{prox}^\\alpha_f(u)`.

All solvers stop on the **true** mean-field residual
:math:`\\lVert q - \\operatorname{softmax}(W q + b) \\rVert / \\lVert q \\rVert` (per example,
computed from the same ``W q`` as the step, so it costs nothing extra for FB/Anderson), treat
NaN/inf as failure, and report per-example convergence.

References: Winston and Kolter, "Monotone operator equilibrium networks", NeurIPS 2020;
Walker and Ni, "Anderson acceleration for fixed-point iterations", SIAM J. Numer. Anal. 2011;
Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bayesnn._pytree import ravel_batched, unravel_batched_like
from bayesnn.boltzmann._precision import einsum as _einsum
from bayesnn.boltzmann.prox import prox_entropy

__all__ = [
    "SolverInfo",
    "ConvergenceError",
    "mean_field_residual",
    "solve",
    "raise_if_not_converged",
    "METHODS",
]

METHODS = ("fb", "anderson", "pr")


class SolverInfo(NamedTuple):
    """Solver diagnostics.

    Attributes
    ----------
    num_steps : int array
        Field evaluations (``W q`` products) used.
    residual : array (batch,)
        True mean-field residual of the returned point, per example.
    converged : bool array (batch,)
        ``residual < tol`` and finite.
    fallback : bool array
        True if the first solver failed (not converged or non-finite for some example) and
        the automatic fallback solver was run; ``num_steps`` then counts both.
    """

    num_steps: jax.Array
    residual: jax.Array
    converged: jax.Array
    fallback: jax.Array = False


class ConvergenceError(RuntimeError):
    """Raised when a mean-field solve did not reach its tolerance within ``max_iter``."""


def _softmax_tree(y):
    return jax.tree_util.tree_map(lambda v: jax.nn.softmax(v, axis=-1), y)


def _rel_norm(a, b):
    num = jnp.sqrt(jnp.sum((a - b) ** 2, axis=1))
    return num / (jnp.sqrt(jnp.sum(a * a, axis=1)) + 1e-12)


def mean_field_residual(field_fn, clamp_fn, q):
    """Per-example residual ``||q - clamp(softmax(W q + b))|| / ||q||``.

    Parameters
    ----------
    field_fn : callable
        ``q -> W q + b`` on a pytree of ``(batch, n, k)`` arrays.
    clamp_fn : callable
        Writes observed one-hots into a state pytree.
    q : pytree of (batch, n, k) arrays

    Returns
    -------
    array (batch,)

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    mf = clamp_fn(_softmax_tree(field_fn(q)))
    return _rel_norm(ravel_batched(q), ravel_batched(mf))


def _check_options(method, alpha, tol, max_iter, memory):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if not float(tol) > 0.0:
        raise ValueError(f"tol must be positive, got {tol}")
    if int(max_iter) < 2:
        raise ValueError(f"max_iter must be >= 2, got {max_iter}")
    if int(memory) < 1:
        raise ValueError(f"memory must be >= 1, got {memory}")


def solve(
    field_fn,
    clamp_fn,
    q0,
    *,
    method="anderson",
    alpha=1.0,
    tol=1e-4,
    max_iter=100,
    memory=5,
    ridge=1e-4,
    mixing=1.0,
    num_newton=8,
    resolvent_fn=None,
    bias=None,
    fallback=None,
    fallback_alpha=0.5,
    fallback_max_iter=300,
    make_resolvent=None,
):
    """Solve the mean-field fixed point ``q = clamp(softmax(W q + b))``.

    Parameters
    ----------
    field_fn : callable
        ``q -> W q + b`` on a pytree of ``(batch, n_l, k_l)`` arrays.
    clamp_fn : callable
        Writes observed one-hots into a state pytree (identity where nothing is observed).
    q0 : pytree
        Starting point (e.g. uniform distributions, clamped).
    method : {"fb", "anderson", "pr"}
        Damped forward-backward, Anderson-accelerated FB, or Peaceman-Rachford.
    alpha : float in (0, 1]
        Damping (static). FB converges for small enough alpha when ``I - W >= m I``; PR
        converges for any alpha.
    tol : float
        Tolerance on the true relative mean-field residual, per example.
    max_iter : int
        Cap on iterations (field evaluations for FB/Anderson, PR steps for PR).
    memory, ridge : int, float
        Anderson history length and Tikhonov regularisation.
    mixing : float in (0, 1]
        Anderson mixing (damping) ``beta``: the new iterate is
        :math:`\\sum_i a_i (x_i + \\beta (g(x_i) - x_i))` (``beta = 1``: :math:`\\sum_i a_i
        g(x_i)`). ``beta < 1`` damps the cycling of undamped mean field without the cost of
        the damped prox.
    num_newton : int
        Newton steps of the damped prox (alpha < 1).
    resolvent_fn : callable
        PR only: ``v -> (I + alpha (I - W))^{-1} v`` on state pytrees.
    bias : pytree
        PR (and a PR fallback): the unary term ``b`` (including any constant external field).
    fallback : {None, "fb", "pr"}
        Anderson only: if any example did not converge (or went non-finite), re-solve from
        ``q0`` with damped forward-backward or Peaceman-Rachford at ``fallback_alpha`` for at
        most ``fallback_max_iter`` iterations (inside ``lax.cond``: no cost when Anderson
        succeeds); examples Anderson solved keep its answer. ``info.fallback`` flags it.
    fallback_alpha, fallback_max_iter : float, int
    make_resolvent : callable
        PR fallback: ``alpha -> resolvent_fn`` (built only if the fallback runs).

    Returns
    -------
    q : pytree
        Last iterate (the one whose residual was measured).
    info : SolverInfo

    References
    ----------
    Winston and Kolter, NeurIPS 2020; Walker and Ni, SIAM J. Numer. Anal. 2011; Feng,
    Winston and Kolter, TMLR 2023.
    """
    _check_options(method, alpha, tol, max_iter, memory)
    if not 0.0 < float(mixing) <= 1.0:
        raise ValueError(f"mixing must be in (0, 1], got {mixing}")
    alpha = float(alpha)
    if fallback is not None:
        if fallback not in ("fb", "pr"):
            raise ValueError(f"fallback must be None, 'fb' or 'pr', got {fallback!r}")
        if not 0.0 < float(fallback_alpha) <= 1.0:
            raise ValueError(f"fallback_alpha must be in (0, 1], got {fallback_alpha}")
        if fallback == "pr" and (make_resolvent is None or bias is None):
            raise ValueError("fallback='pr' needs make_resolvent and bias")

    def act(v):
        return jax.tree_util.tree_map(lambda x: prox_entropy(x, alpha, num_newton), v)

    if method == "pr":
        if resolvent_fn is None or bias is None:
            raise ValueError("method='pr' needs resolvent_fn and bias")
        return _solve_pr(field_fn, clamp_fn, act, q0, alpha, tol, max_iter, resolvent_fn, bias)

    def evaluate(xf):
        x = unravel_batched_like(xf, q0)
        y = field_fn(x)
        mf = clamp_fn(_softmax_tree(y))
        if alpha == 1.0:
            fb = mf
        else:
            mix = jax.tree_util.tree_map(lambda a, c: (1 - alpha) * a + alpha * c, x, y)
            fb = clamp_fn(act(mix))
        mf_f = ravel_batched(mf)
        return ravel_batched(fb), _rel_norm(xf, mf_f)

    x0 = ravel_batched(clamp_fn(q0))
    if method == "fb":
        xf, k, res = _fb_loop(evaluate, x0, tol, max_iter)
    else:
        xf, k, res = _anderson_loop(evaluate, x0, tol, max_iter, memory, ridge, float(mixing))
    conv = jnp.isfinite(res) & (res < tol)
    q, info = unravel_batched_like(xf, q0), SolverInfo(k, res, conv, jnp.array(False))
    if method != "anderson" or fallback is None:
        return q, info

    def rescue(_):
        kw = dict(alpha=fallback_alpha, tol=tol, max_iter=fallback_max_iter)
        kw["num_newton"] = num_newton
        if fallback == "pr":
            kw.update(resolvent_fn=make_resolvent(float(fallback_alpha)), bias=bias)
        q2, info2 = solve(field_fn, clamp_fn, q0, method=fallback, **kw)
        keep = info.converged
        pick = jax.tree_util.tree_map(
            lambda a, b: jnp.where(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), q, q2
        )
        res2 = jnp.where(keep, info.residual, info2.residual)
        conv2 = keep | info2.converged
        return pick, SolverInfo(info.num_steps + info2.num_steps, res2, conv2, jnp.array(True))

    return jax.lax.cond(jnp.all(info.converged), lambda _: (q, info), rescue, None)


def _done(res, tol):
    return jnp.all(res < tol) | ~jnp.all(jnp.isfinite(res))


def _fb_loop(evaluate, x0, tol, max_iter):
    f0, r0 = evaluate(x0)

    def cond(c):
        _, _, r, k = c
        return (k < max_iter) & ~_done(r, tol)

    def body(c):
        _, fx, _, k = c
        f, r = evaluate(fx)
        return fx, f, r, k + 1

    x, _, r, k = jax.lax.while_loop(cond, body, (x0, f0, r0, jnp.array(1)))
    return x, k, r


def _anderson_loop(evaluate, x0, tol, max_iter, memory, ridge, mixing=1.0):
    # History of iterates X and residuals G = f(X) - X, with the Gram matrix G G^T updated
    # one row/column per step (O(b m n) per step instead of recomputing it, O(b m^2 n)).
    b, n = x0.shape
    m = memory
    f0, r0 = evaluate(x0)
    g0 = f0 - x0
    X = jnp.zeros((b, m, n), x0.dtype).at[:, 0].set(x0)
    G = jnp.zeros((b, m, n), x0.dtype).at[:, 0].set(g0)
    GG = jnp.zeros((b, m, m), x0.dtype).at[:, 0, 0].set(_einsum("bn,bn->b", g0, g0))

    def cond(c):
        *_, r, k = c
        return (k < max_iter) & ~_done(r, tol)

    def body(c):
        X, G, GG, _, _, k = c
        valid = (jnp.arange(m) < jnp.minimum(k, m)).astype(x0.dtype)
        scale = jnp.max(jnp.abs(jnp.diagonal(GG, axis1=1, axis2=2)), axis=1) + 1e-30
        H = GG / scale[:, None, None] + ((ridge + 1.0 - valid)[:, None] * jnp.eye(m))[None]
        top = jnp.concatenate([jnp.zeros((b, 1)), jnp.broadcast_to(valid, (b, m))], axis=1)
        side = jnp.concatenate([jnp.broadcast_to(valid[:, None], (b, m, 1)), H], axis=2)
        Hb = jnp.concatenate([top[:, None, :], side], axis=1)
        rhs = jnp.zeros((b, m + 1)).at[:, 0].set(1.0)
        a = jnp.linalg.solve(Hb, rhs[..., None])[:, 1:, 0]
        # sum_i a_i (X_i + mixing G_i); mixing = 1 gives sum_i a_i f(X_i)
        x_new = _einsum("bi,bin->bn", a, X) + mixing * _einsum("bi,bin->bn", a, G)
        f, r = evaluate(x_new)
        g = f - x_new
        slot = k % m
        X = X.at[:, slot].set(x_new)
        G = G.at[:, slot].set(g)
        row = _einsum("bjn,bn->bj", G, g)
        GG = GG.at[:, slot, :].set(row).at[:, :, slot].set(row)
        return X, G, GG, x_new, r, k + 1

    *_, x, r, k = jax.lax.while_loop(cond, body, (X, G, GG, x0, r0, jnp.array(1)))
    return x, k, r


def _solve_pr(field_fn, clamp_fn, act, q0, alpha, tol, max_iter, resolvent_fn, bias):
    tm = jax.tree_util.tree_map
    z0 = clamp_fn(q0)

    def residual(z):
        return mean_field_residual(field_fn, clamp_fn, z)

    def cond(c):
        _, _, r, k = c
        return (k < max_iter) & ~_done(r, tol)

    def body(c):
        z, u, _, k = c
        u_half = tm(lambda a, b: 2 * a - b, z, u)
        z_half = resolvent_fn(tm(lambda a, c: a + alpha * c, u_half, bias))
        u = tm(lambda a, b: 2 * a - b, z_half, u_half)
        z = clamp_fn(act(u))
        return z, u, residual(z), k + 1

    r0 = residual(z0)
    z, _, r, k = jax.lax.while_loop(cond, body, (z0, z0, r0, jnp.array(0)))
    conv = jnp.isfinite(r) & (r < tol)
    return z, SolverInfo(k, r, conv, jnp.array(False))


def raise_if_not_converged(info, what="mean-field solve"):
    """Raise :class:`ConvergenceError` if any example did not converge (host-side check).

    Parameters
    ----------
    info : SolverInfo
    what : str
        Name used in the message.

    References
    ----------
    Feng, Winston and Kolter, "Monotone deep Boltzmann machines", TMLR 2023.
    """
    conv = jnp.asarray(info.converged)
    if not bool(jnp.all(conv)):
        bad = int(jnp.sum(~conv))
        worst = float(jnp.nanmax(jnp.where(jnp.isfinite(info.residual), info.residual, jnp.inf)))
        raise ConvergenceError(
            f"{what} did not converge for {bad} of {conv.size} examples after "
            f"{int(info.num_steps)} steps (worst residual {worst:.3g}); increase max_iter, "
            "lower alpha, or check the monotonicity constraint"
        )
