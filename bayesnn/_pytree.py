"""Flatten a pytree of batched arrays to one ``(batch, features)`` matrix and back.

Every leaf has the same leading (batch) axis ``b``; :func:`ravel_batched` concatenates the
leaves reshaped to ``(b, -1)`` in ``tree_leaves`` order and :func:`unravel_batched_like`
inverts it given a pytree of the same structure and shapes. (``jax.flatten_util.ravel_pytree``
flattens the batch axis too, which the batched fixed-point solvers cannot use.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ravel_batched", "unravel_batched_like"]


def ravel_batched(tree) -> jax.Array:
    """``(b, sum of per-example leaf sizes)`` matrix of a pytree of ``(b, ...)`` arrays."""
    leaves = jax.tree_util.tree_leaves(tree)
    b = leaves[0].shape[0]
    return jnp.concatenate([x.reshape(b, -1) for x in leaves], axis=1)


def unravel_batched_like(flat: jax.Array, like):
    """Inverse of :func:`ravel_batched`: split ``flat`` into a pytree shaped like ``like``."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, i = [], 0
    for x in leaves:
        size = x[0].size
        out.append(flat[:, i : i + size].reshape(x.shape))
        i += size
    return jax.tree_util.tree_unflatten(treedef, out)
