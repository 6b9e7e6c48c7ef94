"""Minibatch streams over a data set held on the device.

Two schemes, both a pure function of a per-chain key and the step index:

* ``"epoch"``: one random permutation per epoch, consecutive slices of it by
  ``lax.dynamic_slice`` (every example once per epoch; the remainder ``N mod B`` is skipped
  in that epoch);
* ``"replace"``: indices drawn with replacement by ``randint``.

``jax.random.choice(..., replace=False)`` per step does a full permutation each time and is
about 30 times slower; it is never used.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["BatchState", "init", "next_batch", "SCHEMES"]

SCHEMES = ("epoch", "replace")


class BatchState(NamedTuple):
    """The current epoch's permutation (unused, length 1, for ``"replace"``)."""

    permutation: jax.Array


def init(rng_key, data_size: int, scheme: str) -> BatchState:
    """Permutation of epoch 0."""
    if scheme == "epoch":
        return BatchState(jax.random.permutation(jax.random.fold_in(rng_key, 0), data_size))
    return BatchState(jnp.zeros((1,), jnp.int32))


def next_batch(rng_key, state: BatchState, t, data, batch_size: int, scheme: str, step_key=None):
    """The minibatch of step ``t`` and the updated stream state.

    ``step_key``: ``fold_in(rng_key, t)`` when the caller has already computed it (used by
    ``"replace"``; the same draws either way).
    """
    data_size = jax.tree_util.tree_leaves(data)[0].shape[0]
    if scheme == "epoch":
        per_epoch = data_size // batch_size
        epoch, position = jnp.divmod(t, per_epoch)
        permutation = jax.lax.cond(
            (position == 0) & (t > 0),
            lambda: jax.random.permutation(jax.random.fold_in(rng_key, epoch), data_size).astype(
                state.permutation.dtype
            ),
            lambda: state.permutation,
        )
        idx = jax.lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))
        state = BatchState(permutation)
    else:
        if step_key is None:
            step_key = jax.random.fold_in(rng_key, t)
        idx = jax.random.randint(step_key, (batch_size,), 0, data_size)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data), state
