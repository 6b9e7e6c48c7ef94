"""A fixed diagonal mass for SG-MCMC, as a linear change of variables.

A posterior whose curvatures span several decades defeats one step size: the step that is
stable in the stiffest direction leaves the flat ones frozen. A fixed diagonal mass
``M = diag(P)`` (``P > 0``, one entry per parameter) is applied here without touching any
kernel: the sampler runs on

.. math::

    z = P^{1/2} \\odot \\theta, \\qquad
    \\log \\pi_z(z) = \\log \\pi\\big(P^{-1/2} \\odot z\\big) + \\text{const},

a fixed linear map, so the target is exact for *any* fixed ``P`` (the Jacobian is constant)
and the draws map back by ``θ = P^{-1/2} z``. Written in ``θ`` with momentum
``r = P^{1/2} p``, SGHMC in ``z`` with friction ``α`` is SGHMC with mass ``M``,

.. math::

    d\\theta = M^{-1} r\\, dt, \\qquad
    dr = \\nabla \\log \\pi(\\theta)\\, dt - \\alpha r\\, dt + \\sqrt{2 \\alpha T M}\\, dW,

the mass-matrix form of Chen, Fox and Guestrin (2014, sec. 3, friction ``C = α M``); SGLD in
``z`` is Langevin dynamics preconditioned by the constant ``G = M^{-1}``, the diagonal
preconditioning of pSGLD (Li et al. 2016) without its ``Γ(θ)`` term, which vanishes for a
constant preconditioner. With ``P`` near the posterior's diagonal curvature, every
coordinate of ``z`` has curvature about 1, so one step size and one friction serve them all.

The usual choice (:meth:`DiagonalMass.from_fisher`) is the prior's precision plus the
empirical Fisher diagonal of the likelihood at a mode (:func:`empirical_fisher_diagonal`),
the diagonal of a Laplace approximation's precision. It must stay fixed while sampling: a
mass that depends on the current position needs the correction term of Ma, Chen and Fox
(2015), which these kernels do not carry.

Example
-------
>>> import jax.numpy as jnp
>>> mass = DiagonalMass.from_precision({"w": jnp.array([1.0, 1e4])}, {"w": jnp.zeros(2)})
>>> mass.to_z({"w": jnp.ones((3, 2))})["w"][0]
Array([  1., 100.], dtype=float32)

References
----------
T. Chen, E. B. Fox, C. Guestrin. Stochastic gradient Hamiltonian Monte Carlo. ICML 2014.
C. Li, C. Chen, D. Carlson, L. Carin. Preconditioned stochastic gradient Langevin dynamics
for deep neural networks. AAAI 2016.
Y.-A. Ma, T. Chen, E. B. Fox. A complete recipe for stochastic gradient MCMC. NeurIPS 2015.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DiagonalMass", "empirical_fisher_diagonal"]


@functools.partial(jax.jit, static_argnums=0)
def _per_example_grads(loglik_fn, position, examples):
    return jax.vmap(jax.grad(loglik_fn), in_axes=(None, 0))(position, examples)


def empirical_fisher_diagonal(loglik_fn: Callable, position, data, *, batch_size: int = 500):
    """Empirical Fisher diagonal ``F_i = sum_n (∂ log p(y_n | x_n, θ) / ∂θ_i)²`` at ``position``.

    Parameters
    ----------
    loglik_fn
        ``(position, example) -> scalar``: the log-likelihood of ONE example, where
        ``example`` is one entry of ``data`` (each leaf without its leading axis; for
        ``data = (x, y)``, ``example = (x_n, y_n)``). The same callable object should be
        passed on every call: it is a static argument of the compiled per-example gradient.
    position
        Pytree of arrays (one chain, no chain axis).
    data
        Pytree of arrays sharing the leading (example) axis, as the driver takes it.
    batch_size
        Examples per compiled ``vmap`` of per-example gradients (memory: ``batch_size``
        gradients at a time); the last chunk may be smaller.

    Returns
    -------
    Pytree like ``position``: the sum over examples of the squared per-example gradients.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
        raise ValueError("data must be a pytree of arrays with a leading example axis")
    n = int(jnp.shape(leaves[0])[0])
    if any(int(jnp.shape(a)[0]) != n for a in leaves):
        raise ValueError("every leaf of data must have the same leading (example) axis size")
    total = jax.tree.map(jnp.zeros_like, position)
    for start in range(0, n, batch_size):
        chunk = jax.tree.map(lambda a, s=start: a[s : s + batch_size], data)
        grads = _per_example_grads(loglik_fn, position, chunk)
        total = jax.tree.map(lambda t, g: t + jnp.sum(g * g, axis=0), total, grads)
    return total


def _is_leaf(tree) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(tree))


def _lead(s, x):
    """``s`` reshaped with singleton leading axes to ``x``'s rank (explicit broadcasting)."""
    return jnp.reshape(s, (1,) * (jnp.ndim(x) - jnp.ndim(s)) + jnp.shape(s))


def _times(scale, z):
    """``scale * z`` leaf by leaf, ``z`` with any leading axes: the map ``θ = P^{-1/2} z``."""
    return jax.tree.map(lambda s, x: _lead(s, x) * x, scale, z)


def _name(path) -> str:
    return "precision" + jax.tree_util.keystr(path)


def _check_structure(precision, position, what: str, *, leading: bool) -> None:
    """Same tree structure; each ``position`` leaf's shape ends with its precision's shape
    (equals it when ``leading`` is False)."""
    p_struct = jax.tree_util.tree_structure(precision)
    x_struct = jax.tree_util.tree_structure(position)
    if p_struct != x_struct:
        raise ValueError(
            f"the precision's structure {p_struct} does not match the {what}'s {x_struct}"
        )
    for (path, p), x in zip(
        jax.tree_util.tree_flatten_with_path(precision)[0],
        jax.tree_util.tree_leaves(position),
        strict=True,
    ):
        ps, xs = tuple(jnp.shape(p)), tuple(jnp.shape(x))
        tail = xs[len(xs) - len(ps) :] if len(xs) >= len(ps) else None
        if (xs != ps) if not leading else (tail != ps):
            rule = "end with" if leading else "equal"
            raise ValueError(
                f"{_name(path)} has shape {ps}; the {what}'s leaf there has shape {xs}, "
                f"which must {rule} it"
            )


class DiagonalMass(NamedTuple):
    """A fixed diagonal mass ``M = diag(precision)``: the map ``z = precision^{1/2} θ``.

    See the module docstring for the math. ``precision`` is a pytree of positive, finite
    arrays with the structure and shapes of ONE chain's position. Positions passed to
    :meth:`to_z` and :meth:`from_z` may carry any leading axes (chains, draws): the
    precision broadcasts on the trailing dimensions. Build it with :meth:`from_precision`
    (which validates) or :meth:`from_fisher`; the bare constructor does not validate, so the
    object can be rebuilt inside ``jit``.

    Attributes
    ----------
    precision
        Pytree of arrays ``P > 0`` like one chain's position.
    """

    precision: Any

    @classmethod
    def from_precision(cls, precision, position) -> DiagonalMass:
        """Validated constructor: ``precision`` must match ``position`` (one chain, same
        structure and shapes) and be finite and positive, else ``ValueError`` naming the
        leaf."""
        _check_structure(precision, position, "position", leading=False)
        for path, p in jax.tree_util.tree_flatten_with_path(precision)[0]:
            if isinstance(p, jax.core.Tracer):
                continue  # values are only checked on concrete arrays
            values = np.asarray(p)
            bad = ~(np.isfinite(values) & (values > 0))
            if bad.any():
                first = values.reshape(-1)[np.argmax(bad.reshape(-1))]
                raise ValueError(
                    f"{_name(path)} must be finite and positive: {int(bad.sum())} of "
                    f"{values.size} entries are not (e.g. {first!r})"
                )
        return cls(precision)

    @classmethod
    def from_fisher(
        cls, loglik_fn: Callable, position, data, prior_precision, *, batch_size: int = 500
    ) -> DiagonalMass:
        """``P = prior_precision + F``: the prior's precision plus the empirical Fisher
        diagonal :func:`empirical_fisher_diagonal` of the likelihood at ``position`` (e.g.
        the MAP), the diagonal of a Laplace approximation's precision.

        ``prior_precision`` is a positive scalar (an isotropic Gaussian prior of variance
        ``s²`` gives ``1 / s²``) or a pytree like ``position``; the other arguments are those
        of :func:`empirical_fisher_diagonal`.
        """
        fisher = empirical_fisher_diagonal(loglik_fn, position, data, batch_size=batch_size)
        if _is_leaf(prior_precision) and jnp.ndim(prior_precision) == 0:
            precision = jax.tree.map(lambda f: f + prior_precision, fisher)
        else:
            _check_structure(prior_precision, position, "position", leading=False)
            precision = jax.tree.map(lambda f, p: f + p, fisher, prior_precision)
        return cls.from_precision(precision, position)

    @property
    def scale(self):
        """``precision^{-1/2}``: the standard deviation of each coordinate under ``M``."""
        return jax.tree.map(jax.lax.rsqrt, self.precision)

    def to_z(self, position):
        """``z = precision^{1/2} θ`` (leading axes of ``position`` broadcast)."""
        _check_structure(self.precision, position, "position", leading=True)
        return jax.tree.map(lambda x, s: x / _lead(s, x), position, self.scale)

    def from_z(self, z):
        """``θ = precision^{-1/2} z`` (leading axes of ``z`` broadcast)."""
        _check_structure(self.precision, z, "z", leading=True)
        return _times(self.scale, z)

    def logdensity(self, logdensity_fn: Callable) -> Callable:
        """``logdensity_z(z, *args, **kwargs) = logdensity_fn(from_z(z), *args, **kwargs)``.

        The log-density of ``z`` up to the constant log-Jacobian, to pass to any kernel and
        driver in place of ``logdensity_fn`` (with initial positions ``to_z(θ_0)``); the
        draws map back with :meth:`from_z`. ``precision^{-1/2}`` is computed once, here.
        """
        precision, scale = self.precision, self.scale

        def logdensity_z(z, *args, **kwargs):
            _check_structure(precision, z, "z", leading=True)
            return logdensity_fn(_times(scale, z), *args, **kwargs)

        return logdensity_z
